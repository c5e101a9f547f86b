// Chooses the worker for the next request from the workers' load. Prefill is compute-bound,
// so prefill workers are compared by the prompt tokens they still have to compute; decode is
// bound by memory and batch size, so decode workers are compared by the sequences they run
// and the KV they have left. Ties rotate, so equal workers share the load.
// Pure logic; thread-compatible.
#ifndef TESSERA_SCHEDULER_WORKER_SELECTOR_H_
#define TESSERA_SCHEDULER_WORKER_SELECTOR_H_

#include <cstdint>
#include <optional>
#include <span>

namespace tessera::scheduler {

struct WorkerLoadView {
  int64_t queued_prefill_tokens = 0;  // Reported by the worker's last heartbeat.
  int32_t running_sequences = 0;      // Reported.
  int32_t free_kv_blocks = 0;         // Reported.
  int32_t total_kv_blocks = 0;        // Reported.
  int32_t in_flight = 0;              // Requests the router has on it now (exact, no lag).
  int64_t in_flight_prompt_tokens = 0;  // Prompt tokens of those requests.
};

enum class WorkKind { kPrefill, kDecode };

struct SelectorWeights {
  // Decode: a fully used KV cache counts as this many running sequences.
  double kv_usage_weight = 16.0;
};

// Index of the least-loaded worker, preferring the first at or after `rotation` among equals;
// nullopt if `workers` is empty.
std::optional<size_t> SelectWorker(std::span<const WorkerLoadView> workers, WorkKind kind,
                                   size_t rotation, const SelectorWeights& weights = {});

// The load score SelectWorker minimizes (exposed for tests and the admin listing).
double LoadScore(const WorkerLoadView& worker, WorkKind kind, const SelectorWeights& weights = {});

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_WORKER_SELECTOR_H_
