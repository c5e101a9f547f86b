// `tessera router`: the front door. Serves the public gRPC API (with health checking and
// server reflection), the Admin API and worker Control on one gRPC port, and the
// OpenAI-compatible HTTP API on another; drops workers that stop heartbeating.
// Thread-safety: RunRouter is called once per process.
#ifndef TESSERA_ENGINE_SERVER_ROUTER_PROCESS_H_
#define TESSERA_ENGINE_SERVER_ROUTER_PROCESS_H_

#include <string>

#include "absl/status/status.h"
#include "engine/server/dispatcher.h"
#include "engine/server/frontend.h"
#include "engine/server/worker_registry.h"

namespace tessera::engine::server {

struct RouterOptions {
  std::string model_path;
  std::string grpc_address = "127.0.0.1:50051";
  std::string http_address = "127.0.0.1:8000";  // Empty: no HTTP.
  FrontendOptions frontend;
  DispatcherOptions dispatcher;
  WorkerRegistryOptions registry;
};

// Runs until SIGINT or SIGTERM. Errors: the model file cannot be read, a port cannot be bound.
absl::Status RunRouter(const RouterOptions& options);

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_ROUTER_PROCESS_H_
