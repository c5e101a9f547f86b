#include "scheduler/prefix_index.h"

namespace tessera::scheduler {

bool PrefixIndex::Apply(const std::string& worker, uint64_t epoch, int64_t sequence,
                        std::span<const uint64_t> stored, std::span<const uint64_t> removed) {
  auto it = workers_.find(worker);
  if (it == workers_.end() || it->second.epoch != epoch || sequence != it->second.sequence + 1) {
    return false;
  }
  WorkerView& view = it->second;
  for (uint64_t hash : removed) view.hashes.erase(hash);
  for (uint64_t hash : stored) view.hashes.insert(hash);
  view.sequence = sequence;
  return true;
}

void PrefixIndex::Snapshot(const std::string& worker, uint64_t epoch, int64_t sequence,
                           std::span<const uint64_t> held) {
  WorkerView& view = workers_[worker];
  view.epoch = epoch;
  view.sequence = sequence;
  view.hashes.clear();
  view.hashes.insert(held.begin(), held.end());
}

void PrefixIndex::RemoveWorker(const std::string& worker) { workers_.erase(worker); }

int32_t PrefixIndex::LeadingOverlap(const std::string& worker,
                                    std::span<const uint64_t> hashes) const {
  auto it = workers_.find(worker);
  if (it == workers_.end()) return 0;
  int32_t n = 0;
  while (n < static_cast<int32_t>(hashes.size()) && it->second.hashes.contains(hashes[n])) ++n;
  return n;
}

int32_t PrefixIndex::held(const std::string& worker) const {
  auto it = workers_.find(worker);
  return it == workers_.end() ? 0 : static_cast<int32_t>(it->second.hashes.size());
}

size_t PickByOverlapAndLoad(std::span<const double> load_scores,
                            std::span<const int32_t> overlap_tokens, size_t rotation,
                            const RoutingWeights& weights) {
  const size_t n = load_scores.size();
  size_t best = rotation % n;
  auto score = [&](size_t i) {
    return weights.load_weight * load_scores[i] - weights.overlap_weight * overlap_tokens[i];
  };
  double best_score = score(best);
  for (size_t k = 1; k < n; ++k) {
    size_t i = (rotation + k) % n;
    if (score(i) < best_score) {
      best = i;
      best_score = score(i);
    }
  }
  return best;
}

}  // namespace tessera::scheduler
