// The router's view of which workers hold which KV blocks, kept from the workers' own change
// events instead of asking them per request. Each worker numbers its event batches within an
// epoch (a value fixed at its start): a batch that does not follow the last one applied, or
// comes from an epoch the index has not seen (the worker restarted, or the router did), makes
// the index ask for a snapshot, which replaces that worker's view whole. So the view never
// drifts: it is exact as of the last batch applied.
// Pure logic; thread-compatible.
#ifndef TESSERA_SCHEDULER_PREFIX_INDEX_H_
#define TESSERA_SCHEDULER_PREFIX_INDEX_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"

namespace tessera::scheduler {

class PrefixIndex {
 public:
  // Applies one batch of changes. Returns false (and changes nothing) if the batch does not
  // continue what the index has from this worker: the worker must send a snapshot.
  bool Apply(const std::string& worker, uint64_t epoch, int64_t sequence,
             std::span<const uint64_t> stored, std::span<const uint64_t> removed);
  // Replaces the worker's view with `held`, as of batch `sequence` of `epoch`.
  void Snapshot(const std::string& worker, uint64_t epoch, int64_t sequence,
                std::span<const uint64_t> held);
  void RemoveWorker(const std::string& worker);

  // How many of `hashes` (a prompt's chained block hashes, in order) the worker holds from
  // the start.
  int32_t LeadingOverlap(const std::string& worker, std::span<const uint64_t> hashes) const;
  int32_t held(const std::string& worker) const;

 private:
  struct WorkerView {
    uint64_t epoch = 0;
    int64_t sequence = 0;
    absl::flat_hash_set<uint64_t> hashes;
  };
  absl::flat_hash_map<std::string, WorkerView> workers_;
};

// Chooses the prefill worker: each candidate's load score (scheduler::LoadScore) weighted by
// `load_weight`, minus its leading overlap in tokens weighted by `overlap_weight`. Returns the
// index of the lowest; ties go to the first at or after `rotation`.
struct RoutingWeights {
  double load_weight = 1.0;     // Per queued prompt token (or load unit).
  double overlap_weight = 1.0;  // Per prompt token already cached on the worker.
};
size_t PickByOverlapAndLoad(std::span<const double> load_scores,
                            std::span<const int32_t> overlap_tokens, size_t rotation,
                            const RoutingWeights& weights);

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_PREFIX_INDEX_H_
