// The OpenAI-compatible HTTP API on the router (cpp-httplib): /v1/completions and
// /v1/chat/completions (streaming SSE or not), /v1/models, /health and /metrics (Prometheus),
// plus /admin/workers. Requests become the same validated jobs as the gRPC API's; errors use
// OpenAI's error body with 400 for bad input, 429 when admission control refuses, 503 when
// no worker can serve, 504 past a deadline. A client that disconnects mid-stream cancels its
// request on every worker.
// Thread-safety: thread-safe; Start() and Stop() from one thread.
#ifndef TESSERA_ENGINE_SERVER_OPENAI_HTTP_H_
#define TESSERA_ENGINE_SERVER_OPENAI_HTTP_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "engine/server/frontend.h"
#include "engine/server/metrics.h"
#include "engine/server/worker_registry.h"

namespace httplib {
class Server;
}

namespace tessera::engine::server {

class OpenAiHttpServer {
 public:
  OpenAiHttpServer(Frontend& frontend, WorkerRegistry& registry, Metrics& metrics);
  ~OpenAiHttpServer();

  // Binds `address` (host:port) and serves on a background thread.
  absl::Status Start(const std::string& address);
  void Stop();

 private:
  void RefreshGauges();

  Frontend& frontend_;
  WorkerRegistry& registry_;
  Metrics& metrics_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_OPENAI_HTTP_H_
