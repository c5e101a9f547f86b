#include "engine/server/frontend.h"

#include <deque>
#include <memory>
#include <optional>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/server/proto_convert.h"

namespace tessera::engine::server {

std::string ModelIdFromPath(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();  // A directory's "dir/".
  std::string name = path.substr(path.find_last_of('/') + 1);
  if (absl::EndsWith(name, ".gguf")) name.resize(name.size() - 5);
  return name;
}

absl::StatusOr<std::unique_ptr<Frontend>> Frontend::Create(const std::string& model_path,
                                                           Dispatcher& dispatcher,
                                                           Metrics& metrics,
                                                           const FrontendOptions& options) {
  std::unique_ptr<Frontend> frontend(new Frontend(dispatcher, metrics, options));
  const std::vector<double> latency = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                       1,     2.5,  5,     10,   30,  60,  120};
  metrics.Declare("tessera_requests_total", Metrics::Type::kCounter,
                  "Generation requests by API and final status code.");
  metrics.Declare("tessera_request_duration_seconds", Metrics::Type::kHistogram,
                  "Time from arrival to the last token.", latency);
  metrics.Declare("tessera_time_to_first_token_seconds", Metrics::Type::kHistogram,
                  "Time from arrival to the first token.", latency);
  metrics.Declare("tessera_prompt_tokens_total", Metrics::Type::kCounter,
                  "Prompt tokens of finished requests.");
  metrics.Declare("tessera_generation_tokens_total", Metrics::Type::kCounter,
                  "Tokens generated for finished requests.");
  TESSERA_ASSIGN_OR_RETURN(ModelFacts facts, ReadModelFacts(model_path));
  frontend->tokenizer_ = std::move(facts.tokenizer);
  frontend->context_length_ = facts.context_length;
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

namespace {

// Passes events through and keeps the last one's usage for the metrics.
class RecordingSink final : public OutputSink {
 public:
  explicit RecordingSink(OutputSink& inner) : inner_(inner) {}
  bool Send(const OutputEvent& event) override {
    if (!event.finish_reason.empty()) usage_ = event.usage;
    return inner_.Send(event);
  }
  const Usage& usage() const { return usage_; }

 private:
  OutputSink& inner_;
  Usage usage_;
};

}  // namespace

AsyncTask<absl::Status> Frontend::RunAsync(const DispatchJob& job, OutputSink& sink,
                                           ParentCall* parent,
                                           absl::string_view api) {
  absl::Status status;
  RecordingSink recording(sink);
  const std::string api_label(api);
  if (in_flight_.fetch_add(1) >= options_.max_in_flight) {
    in_flight_.fetch_sub(1);
    status = absl::ResourceExhaustedError(absl::StrCat(
        "the router has ", options_.max_in_flight, " requests in flight, its limit; retry later"));
  } else {
    status = co_await dispatcher_.Run(job, recording, parent);
    in_flight_.fetch_sub(1);
  }
  metrics_.Increment("tessera_requests_total",
                     {{"api", api_label}, {"code", absl::StatusCodeToString(status.code())}});
  if (status.ok()) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - job.arrival).count();
    metrics_.Observe("tessera_request_duration_seconds", {{"api", api_label}}, seconds);
    metrics_.Observe("tessera_time_to_first_token_seconds", {{"api", api_label}},
                     recording.usage().time_to_first_token_ms / 1000.0);
    metrics_.Increment("tessera_prompt_tokens_total", {}, recording.usage().prompt_tokens);
    metrics_.Increment("tessera_generation_tokens_total", {},
                       recording.usage().completion_tokens);
  }
  co_return status;
}

namespace {

// Carries a request's events from gRPC's threads (which must not block) to the thread that
// waits for the request, and that thread's "client gone" back.
class HandOverSink final : public OutputSink {
 public:
  bool Send(const OutputEvent& event) override {
    absl::MutexLock lock(&mu_);
    if (refused_) return false;
    events_.push_back(event);
    return true;
  }
  void Refuse() {
    absl::MutexLock lock(&mu_);
    refused_ = true;
  }
  void Finish(absl::Status status) {
    absl::MutexLock lock(&mu_);
    result_ = std::move(status);
  }
  // Blocks until there are events or the result; returns the events (and the result once
  // every event has been taken).
  std::deque<OutputEvent> Take(std::optional<absl::Status>& result) {
    absl::MutexLock lock(&mu_);
    auto ready = [this] { return !events_.empty() || result_.has_value(); };
    mu_.Await(absl::Condition(&ready));
    std::deque<OutputEvent> taken;
    taken.swap(events_);
    result = result_;
    return taken;
  }

 private:
  absl::Mutex mu_;
  std::deque<OutputEvent> events_ ABSL_GUARDED_BY(mu_);
  bool refused_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> result_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::Status Frontend::Run(const DispatchJob& job, OutputSink& sink, absl::string_view api) {
  // Shared with the task's completion callback, which may still be unwinding after this
  // thread has seen the result.
  auto hand_over = std::make_shared<HandOverSink>();
  StartDetached<absl::Status>(RunAsync(job, *hand_over, nullptr, api),
                              [hand_over](absl::Status status) { hand_over->Finish(status); });
  while (true) {
    std::optional<absl::Status> result;
    for (const OutputEvent& event : hand_over->Take(result)) {
      if (!sink.Send(event)) hand_over->Refuse();
    }
    if (result.has_value()) return *result;
  }
}

}  // namespace tessera::engine::server
