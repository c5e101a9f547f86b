// `tessera worker`: one process that loads the model, serves the Worker and KvTransfer gRPC
// services, registers with the router and heartbeats its load until it is drained or
// signalled.
// Thread-safety: RunWorker is called once per process.
#ifndef TESSERA_ENGINE_SERVER_WORKER_PROCESS_H_
#define TESSERA_ENGINE_SERVER_WORKER_PROCESS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/runtime/step_loop.h"
#include "tessera/internal/v1/worker.pb.h"

namespace tessera::engine::server {

struct WorkerOptions {
  std::string model_path;
  int threads = 0;  // 0: one per core.
  // Scheduling niceness of every thread of the worker (0-19). On a host the router shares,
  // a positive value keeps compute from delaying the router's latency-critical work.
  int nice = 0;
  tessera::internal::v1::WorkerRole role = tessera::internal::v1::ROLE_BOTH;
  std::string router_address;  // host:port of the router's gRPC endpoint.
  // Where this worker listens; port 0 picks a free one.
  std::string listen_address = "127.0.0.1:0";
  // The host other processes reach this worker at (the listen host unless it is 0.0.0.0).
  std::string advertise_host;
  StepLoopOptions loop;
  // Budgets in bytes; when set they decide loop.num_blocks / loop.host_blocks.
  int64_t device_kv_bytes = 0;
  int64_t host_kv_bytes = 0;
  int32_t max_requests = 256;
  bool force_network_kv = false;
  int32_t fault_fail_kv_pulls = 0;  // Fault injection for tests: break this many KV pulls.
  absl::Duration heartbeat_interval = absl::Milliseconds(500);
  // Expert parallelism: this worker is rank `ep_rank` of a group of `ep_size` processes that
  // together hold the model's experts and step together; each rank serves its own requests
  // (data-parallel attention). The ranks find each other through the router's rendezvous
  // under `ep_group`, a name new for each forming of the group. A dense model's FFN runs as
  // `ffn_experts` experts spread over the group.
  int ep_size = 1;
  int ep_rank = 0;
  std::string ep_group;
  int ffn_experts = 8;
  // The expert rebalancer (EPLB): extra expert slots per rank, and steps between rebalances
  // (0: never).
  int redundant_experts = 0;
  int rebalance_interval = 0;
  // Micro-batch overlap (Hugging Face MoE models): steps of at least `ep_overlap_min_tokens`
  // tokens run as two micro-batches taking turns, each with a communicator of its own, so one's
  // dispatch and combine overlap the other's compute. Every rank of a group must agree.
  bool ep_overlap = false;
  int ep_overlap_min_tokens = 256;
  absl::Duration ep_timeout = absl::Seconds(30);  // Forming the group; every collective.
};

// Returns when the worker was drained by the router, or on SIGINT/SIGTERM after finishing
// its requests. Errors: the model cannot be loaded, the port cannot be bound, the router
// cannot be reached at start-up.
absl::Status RunWorker(const WorkerOptions& options);

// Parses "prefill", "decode" or "both".
absl::StatusOr<tessera::internal::v1::WorkerRole> ParseWorkerRole(absl::string_view name);
absl::string_view WorkerRoleName(tessera::internal::v1::WorkerRole role);

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_WORKER_PROCESS_H_
