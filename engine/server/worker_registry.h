// The router's view of its workers: who registered, their role, address and last reported
// load, which are draining, and which are out of rotation for failing. Workers that stop
// heartbeating are dropped by Reap(). Acquire() picks a worker for a kind of work by load and
// returns a lease that counts the request against the worker until it ends, and reports its
// outcome to the worker's circuit breaker.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_WORKER_REGISTRY_H_
#define TESSERA_ENGINE_SERVER_WORKER_REGISTRY_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "scheduler/circuit_breaker.h"
#include "scheduler/prefix_index.h"
#include "scheduler/worker_selector.h"
#include "tessera/internal/v1/worker.pb.h"
#include "tessera/v1/admin.pb.h"

namespace tessera::engine::server {

struct WorkerRegistryOptions {
  std::chrono::milliseconds heartbeat_timeout{3000};
  scheduler::CircuitBreakerOptions breaker;
  scheduler::SelectorWeights weights;
  // Prefill routing: load against prompt tokens already cached on the worker.
  scheduler::RoutingWeights routing;
  // The caller's host id (LocalHostId()): workers with the same one are called through their
  // local (Unix socket) address when they have one. Empty: always their TCP address.
  std::string host_id;
};

// What a request needs from a worker.
enum class WorkerNeed {
  kPrefill,    // A prefill-role worker.
  kDecode,     // A decode-role worker.
  kColocated,  // A both-role worker.
};

class WorkerRegistry;

// A request's hold on one worker. Ending it (destruction) takes the request off the worker's
// count; Succeeded()/Failed() feed the circuit breaker first (a lease ended without either,
// e.g. by a client cancel, counts as a success: the worker did nothing wrong).
class WorkerLease {
 public:
  WorkerLease(WorkerLease&& other) noexcept
      : registry_(std::exchange(other.registry_, nullptr)),
        worker_id_(std::move(other.worker_id_)),
        address_(std::move(other.address_)),
        call_address_(std::move(other.call_address_)),
        host_id_(std::move(other.host_id_)),
        prompt_tokens_(other.prompt_tokens_),
        reported_(other.reported_) {}
  WorkerLease& operator=(WorkerLease&&) = delete;
  ~WorkerLease();

  const std::string& worker_id() const { return worker_id_; }
  // The worker's advertised (TCP) address, which other workers use.
  const std::string& address() const { return address_; }
  // Where this process calls the worker: its Unix socket when on the same host.
  const std::string& call_address() const { return call_address_; }
  const std::string& host_id() const { return host_id_; }
  void Succeeded();
  void Failed();
  // Ends the lease now, as its destruction would (an unreported outcome counts as success):
  // the worker's part of the request is over, so its load must not count it any longer (the
  // client may send its next request at once).
  void Release();

 private:
  friend class WorkerRegistry;
  WorkerLease(WorkerRegistry* registry, std::string worker_id, std::string address,
              std::string call_address, std::string host_id, int64_t prompt_tokens)
      : registry_(registry), worker_id_(std::move(worker_id)), address_(std::move(address)),
        call_address_(std::move(call_address)), host_id_(std::move(host_id)),
        prompt_tokens_(prompt_tokens) {}

  WorkerRegistry* registry_;  // Null once moved from.
  std::string worker_id_;
  std::string address_;
  std::string call_address_;
  std::string host_id_;
  int64_t prompt_tokens_;
  bool reported_ = false;
};

class WorkerRegistry {
 public:
  using Clock = std::chrono::steady_clock;

  explicit WorkerRegistry(WorkerRegistryOptions options = {}) : options_(options) {}

  std::string Register(const tessera::internal::v1::RegisterRequest& request);
  // Returns {known, drain}.
  tessera::internal::v1::HeartbeatResponse Heartbeat(
      const tessera::internal::v1::HeartbeatRequest& request);
  void Deregister(const std::string& worker_id);
  // By worker id or address. NotFound if neither matches.
  absl::Status Drain(const std::string& worker_or_address);
  // Drops workers whose last heartbeat is older than the timeout; returns their ids.
  std::vector<std::string> Reap();

  // The least-loaded worker for `need` that is serving, in rotation and not in `exclude`.
  // For prefill, given the prompt, load is balanced against how much of the prompt each
  // worker already holds in its KV cache (RoutingWeights). Unavailable if there is none.
  absl::StatusOr<WorkerLease> Acquire(WorkerNeed need, int64_t prompt_tokens,
                                      const absl::flat_hash_set<std::string>& exclude = {},
                                      std::span<const int32_t> prompt = {});
  // Applies a worker's KV change batch to the routing index; false if the router needs a
  // snapshot from it.
  bool ApplyKvEvents(const tessera::internal::v1::KvEvents& events);
  // Whether any live worker could take `need` (ignoring load and breakers).
  bool Has(WorkerNeed need) const;

  std::vector<tessera::v1::WorkerStatus> List() const;

 private:
  friend class WorkerLease;
  struct Worker {
    tessera::internal::v1::RegisterRequest info;
    tessera::internal::v1::WorkerLoad load;
    Clock::time_point last_heartbeat;
    bool draining = false;
    int32_t in_flight = 0;
    int64_t in_flight_prompt_tokens = 0;
    scheduler::CircuitBreaker breaker;
  };
  void Release(const std::string& worker_id, int64_t prompt_tokens);
  void Report(const std::string& worker_id, bool success);

  const WorkerRegistryOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Worker> workers_ ABSL_GUARDED_BY(mu_);
  scheduler::PrefixIndex prefix_index_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Per kind of need, so that equal workers of each pool take turns.
  size_t rotation_[3] ABSL_GUARDED_BY(mu_) = {0, 0, 0};
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_WORKER_REGISTRY_H_
