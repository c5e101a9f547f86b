// What the router's gRPC and HTTP edges share: the model's identity and tokenizer, request
// validation (every bad input becomes InvalidArgument naming its field), admission control
// (a bounded number of requests in flight; past it, ResourceExhausted at once), and the
// dispatcher that runs admitted requests on the workers.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_FRONTEND_H_
#define TESSERA_ENGINE_SERVER_FRONTEND_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/runtime/loaded_model.h"
#include "engine/server/dispatcher.h"
#include "engine/server/metrics.h"
#include "engine/tokenizer/tokenizer.h"
#include "tessera/v1/inference.pb.h"

namespace tessera::engine::server {

struct FrontendOptions {
  int32_t max_in_flight = 256;
  int64_t max_request_bytes = 4 << 20;
};

class Frontend {
 public:
  // Loads the tokenizer and model facts (not the weights) from the GGUF file. Declares its
  // metric families in `metrics`.
  static absl::StatusOr<std::unique_ptr<Frontend>> Create(const std::string& model_path,
                                                          Dispatcher& dispatcher,
                                                          Metrics& metrics,
                                                          const FrontendOptions& options);

  const std::string& model_id() const { return model_id_; }
  int32_t context_length() const { return context_length_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

  // Validates and tokenizes a request.
  absl::StatusOr<DispatchJob> Prepare(const tessera::v1::GenerateRequest& request) const;
  // InvalidArgument unless `model` is empty or this router's model.
  absl::Status CheckModel(absl::string_view model) const;

  // Admits, runs and releases one request (ResourceExhausted when full), and records it in
  // the metrics under `api` ("grpc" or "http"). Never blocks; see Dispatcher::Run.
  AsyncTask<absl::Status> RunAsync(const DispatchJob& job, OutputSink& sink,
                                   ParentCall* parent, absl::string_view api);
  // The same for a caller with a thread of its own to block (the HTTP server's): `sink` gets
  // the events on this thread, and may block.
  absl::Status Run(const DispatchJob& job, OutputSink& sink, absl::string_view api);

  // Counts a request refused before it ran (bad input).
  void CountRejected(absl::string_view api, const absl::Status& status) {
    metrics_.Increment("tessera_requests_total", {{"api", std::string(api)},
                                                  {"code", absl::StatusCodeToString(status.code())}});
  }

  int32_t in_flight() const { return in_flight_.load(); }
  const FrontendOptions& options() const { return options_; }

 private:
  Frontend(Dispatcher& dispatcher, Metrics& metrics, const FrontendOptions& options)
      : dispatcher_(dispatcher), metrics_(metrics), options_(options) {}

  Dispatcher& dispatcher_;
  Metrics& metrics_;
  const FrontendOptions options_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::string model_id_;
  std::string id_prefix_;
  int32_t context_length_ = 0;
  std::atomic<int32_t> in_flight_{0};
  mutable std::atomic<int64_t> next_request_{1};
};

// The model id a path is served under: a GGUF file's name without ".gguf", or a checkpoint
// directory's name.
std::string ModelIdFromPath(std::string path);

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_FRONTEND_H_
