#include "scheduler/worker_selector.h"

#include <algorithm>

namespace tessera::scheduler {

double LoadScore(const WorkerLoadView& w, WorkKind kind, const SelectorWeights& weights) {
  if (kind == WorkKind::kPrefill) {
    // The heartbeat's queue lags; the router's own in-flight prompt tokens do not. Take the
    // larger so a burst between heartbeats still spreads out.
    return static_cast<double>(std::max(w.queued_prefill_tokens, w.in_flight_prompt_tokens)) +
           w.in_flight;
  }
  double kv_used = w.total_kv_blocks > 0
                       ? 1.0 - static_cast<double>(w.free_kv_blocks) / w.total_kv_blocks
                       : 0.0;
  return std::max(w.running_sequences, w.in_flight) + weights.kv_usage_weight * kv_used;
}

std::optional<size_t> SelectWorker(std::span<const WorkerLoadView> workers, WorkKind kind,
                                   size_t rotation, const SelectorWeights& weights) {
  if (workers.empty()) return std::nullopt;
  const size_t n = workers.size();
  size_t best = rotation % n;
  double best_score = LoadScore(workers[best], kind, weights);
  for (size_t k = 1; k < n; ++k) {
    size_t i = (rotation + k) % n;
    double score = LoadScore(workers[i], kind, weights);
    if (score < best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

}  // namespace tessera::scheduler
