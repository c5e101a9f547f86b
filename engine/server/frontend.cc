#include "engine/server/frontend.h"

#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/server/proto_convert.h"

namespace tessera::engine::server {

std::string ModelIdFromPath(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  if (absl::EndsWith(name, ".gguf")) name.resize(name.size() - 5);
  return name;
}

absl::StatusOr<std::unique_ptr<Frontend>> Frontend::Create(const std::string& model_path,
                                                           Dispatcher& dispatcher,
                                                           const FrontendOptions& options) {
  std::unique_ptr<Frontend> frontend(new Frontend(dispatcher, options));
  TESSERA_ASSIGN_OR_RETURN(frontend->file_, GgufFile::Open(model_path));
  TESSERA_ASSIGN_OR_RETURN(frontend->tokenizer_, Tokenizer::FromGguf(*frontend->file_));
  TESSERA_ASSIGN_OR_RETURN(std::string architecture,
                           frontend->file_->GetString("general.architecture"));
  TESSERA_ASSIGN_OR_RETURN(int64_t context,
                           frontend->file_->GetInt(architecture + ".context_length"));
  if (context <= 0 || context > (int64_t{1} << 24)) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_path, ": ", architecture, ".context_length is ", context));
  }
  frontend->context_length_ = static_cast<int32_t>(context);
  frontend->model_id_ = ModelIdFromPath(model_path);
  frontend->id_prefix_ = absl::StrCat(absl::Hex(std::random_device{}() & 0xffffff));
  return frontend;
}

absl::Status Frontend::CheckModel(absl::string_view model) const {
  if (model.empty() || model == model_id_) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("model: unknown model '", model, "'; this server serves '", model_id_, "'"));
}

absl::StatusOr<DispatchJob> Frontend::Prepare(const tessera::v1::GenerateRequest& request) const {
  const int64_t bytes = static_cast<int64_t>(request.ByteSizeLong());
  if (bytes > options_.max_request_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("request is ", bytes,
                                                   " bytes; the limit is ",
                                                   options_.max_request_bytes));
  }
  TESSERA_RETURN_IF_ERROR(CheckModel(request.model()));
  DispatchJob job;
  // Ids name handoffs on the workers, so they must not repeat even across router restarts:
  // a random per-router prefix plus a counter. A client's own id is kept for logs but made
  // unique the same way.
  job.request_id = absl::StrCat(request.request_id().empty() ? "req" : request.request_id(), "-",
                                id_prefix_, "-", next_request_.fetch_add(1));
  if (request.has_tokens()) {
    const int32_t vocab = tokenizer_->vocab_size();
    for (int i = 0; i < request.tokens().ids_size(); ++i) {
      int32_t id = request.tokens().ids(i);
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat("tokens.ids[", i, "] is ", id,
                                                       ", outside the vocabulary of ", vocab));
      }
    }
    job.prompt.assign(request.tokens().ids().begin(), request.tokens().ids().end());
  } else {
    job.prompt = tokenizer_->Encode(request.text(), /*parse_special=*/true);
  }
  if (job.prompt.empty()) return absl::InvalidArgumentError("prompt is empty");
  if (static_cast<int64_t>(job.prompt.size()) >= context_length_) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt has ", job.prompt.size(), " tokens; the context holds ",
                     context_length_, " including at least one generated token"));
  }
  TESSERA_ASSIGN_OR_RETURN(job.sampling, SamplingFromProto(request.sampling()));
  return job;
}

absl::Status Frontend::Run(const DispatchJob& job, OutputSink& sink,
                           grpc::ServerContext* parent) {
  if (in_flight_.fetch_add(1) >= options_.max_in_flight) {
    in_flight_.fetch_sub(1);
    return absl::ResourceExhaustedError(absl::StrCat(
        "the router has ", options_.max_in_flight, " requests in flight, its limit; retry later"));
  }
  absl::Status status = dispatcher_.Run(job, sink, parent);
  in_flight_.fetch_sub(1);
  return status;
}

}  // namespace tessera::engine::server
