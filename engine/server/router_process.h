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
  // When > 0, every router thread runs under SCHED_FIFO at this priority (1-99), so that on a
  // host whose cores the workers keep busy the router is never queued behind their compute.
  // Needs CAP_SYS_NICE (or root). Its per-request work is small but not nothing (validation,
  // tokenization, chat templates): a burst of long prompts runs ahead of the workers too,
  // up to the kernel's real-time throttling (95% of each core by default).
  int realtime_priority = 0;
  // Completion queues, each drained by one thread that does all the work of the requests on
  // it (see CompletionQueueLoop).
  int io_threads = 1;
};

// Runs until SIGINT or SIGTERM. Errors: the model file cannot be read, a port cannot be bound,
// the real-time priority cannot be set.
absl::Status RunRouter(const RouterOptions& options);

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_ROUTER_PROCESS_H_
