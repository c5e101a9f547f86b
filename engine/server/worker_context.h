// What a worker's RPC services share: the step thread that owns the model and KV cache, the
// handoff registry, and the worker's identity and admission limits.
// Thread-safety: the members are thread-safe or immutable after start-up.
#ifndef TESSERA_ENGINE_SERVER_WORKER_CONTEXT_H_
#define TESSERA_ENGINE_SERVER_WORKER_CONTEXT_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/models/model.h"
#include "engine/server/handoff_registry.h"
#include "engine/server/idle_server_calls.h"
#include "engine/server/cache_pool_client.h"
#include "engine/server/kv_puller.h"
#include "engine/server/step_thread.h"
#include "kvcache/paged_kv_cache.h"
#include "tessera/internal/v1/worker.pb.h"

namespace tessera::engine::server {

struct WorkerContext {
  tessera::internal::v1::WorkerRole role = tessera::internal::v1::ROLE_BOTH;
  std::string host_id;
  // Pull KV over the network even from a worker on this host (tests, benchmarks).
  bool force_network_kv = false;
  int32_t max_requests = 256;  // Admission bound: requests in flight on this worker.
  ModelConfig model_config;

  StepThread* step = nullptr;
  HandoffRegistry* handoffs = nullptr;
  // The cache the step thread writes; read (not written) by KV transfer handlers.
  kvcache::PagedKvCache* cache = nullptr;
  KvPuller* puller = nullptr;
  CachePoolClient* pool = nullptr;  // Null: no cache pool.

  std::atomic<int32_t> active_requests{0};
  std::atomic<bool> draining{false};
  // Prefill streams the router opened ahead of requests, waiting for one.
  IdleServerCalls idle_calls;
};

// Counts one request in flight on the worker for its lifetime, if admitted: a draining
// worker refuses with Unavailable (try another worker), a full one with ResourceExhausted.
class AdmissionTicket {
 public:
  explicit AdmissionTicket(WorkerContext& context) : context_(context) {
    if (context.draining.load()) {
      status_ = absl::UnavailableError("worker is draining");
    } else if (context.active_requests.fetch_add(1) >= context.max_requests) {
      context.active_requests.fetch_sub(1);
      status_ = absl::ResourceExhaustedError(absl::StrCat(
          "worker has ", context.max_requests, " requests in flight, its limit"));
    } else {
      counted_ = true;
    }
  }
  ~AdmissionTicket() {
    if (counted_) context_.active_requests.fetch_sub(1);
  }
  AdmissionTicket(const AdmissionTicket&) = delete;
  AdmissionTicket& operator=(const AdmissionTicket&) = delete;
  const absl::Status& status() const { return status_; }

 private:
  WorkerContext& context_;
  absl::Status status_;
  bool counted_ = false;
};

// A host identity: equal on two processes exactly when they can share memory.
std::string LocalHostId();

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_WORKER_CONTEXT_H_
