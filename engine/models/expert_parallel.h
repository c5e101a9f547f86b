// A layer's routed experts, in this process or spread over an expert-parallel group. In a
// group, each of R ranks (processes) holds E/R of the layer's experts, and every rank runs
// attention on its own sequences. Per MoE layer:
//   1. each rank sends every routed (token, expert) row to the rank holding that expert
//      (all-to-all(v): the dispatch), after telling each rank how many rows to expect;
//   2. ranks run their experts on the rows they received;
//   3. the outputs go back the same way (the combine), and each rank adds them, weighted, to
//      its tokens.
// Rows travel sorted by expert and the combine adds them in expert order, exactly as the
// single-process MoeExperts does, so the result is the same to the bit for any group size.
// Every rank must call Forward for every MoE layer of every step, with zero tokens if it has
// none: the collectives need the whole group. A step split into two micro-batches ("lanes")
// uses one communicator per lane, so each lane's collectives pair up across ranks whatever
// the order the lanes' threads reach them in.
// Thread-safety: Forward may run for different lanes at once; not for the same lane.
#ifndef TESSERA_ENGINE_MODELS_EXPERT_PARALLEL_H_
#define TESSERA_ENGINE_MODELS_EXPERT_PARALLEL_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "comm/communicator.h"
#include "engine/models/model.h"
#include "engine/models/moe_experts.h"
#include "engine/safetensors/hf_checkpoint.h"

namespace tessera::engine {

// Where MoE layers' time goes, summed over layers, steps and lanes: nanoseconds of wall time
// on the threads that ran each phase (so waiting for peers counts as communication).
struct MoeLayerTimes {
  std::atomic<int64_t> routing_ns{0};   // Router matmul and the top-k choice.
  std::atomic<int64_t> dispatch_ns{0};  // Counts and rows to the experts' ranks.
  std::atomic<int64_t> experts_ns{0};   // This rank's expert matmuls.
  std::atomic<int64_t> combine_ns{0};   // Outputs back to their tokens' ranks, and their sum.
};

// Adds the wall time from construction to destruction to *counter (nothing if null).
class PhaseTimer {
 public:
  explicit PhaseTimer(std::atomic<int64_t>* counter)
      : counter_(counter), start_(std::chrono::steady_clock::now()) {}
  ~PhaseTimer() {
    if (counter_ == nullptr) return;
    counter_->fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now() - start_)
                            .count(),
                        std::memory_order_relaxed);
  }
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

 private:
  std::atomic<int64_t>* const counter_;
  const std::chrono::steady_clock::time_point start_;
};

class RoutedExperts {
 public:
  // Loads the routed experts under `prefix` ("<prefix><e>.gate_proj.weight", ...): all of
  // them, or with an expert-parallel group (`lanes`: its communicator for each lane, all over
  // the same ranks; empty without a group) this rank's share, global ids
  // [rank * E/R, (rank + 1) * E/R). InvalidArgument if E does not split evenly over the group.
  // `times` (may be null) receives the phases' times.
  static absl::StatusOr<std::unique_ptr<RoutedExperts>> Load(
      const HfCheckpoint& checkpoint, const std::string& prefix, int64_t num_experts,
      int64_t hidden, int64_t intermediate, const std::vector<comm::Communicator*>& lanes,
      MoeLayerTimes* times);

  // Wraps this rank's share of a layer's `num_experts` experts (all of them without a group;
  // else global ids [rank * E/R, (rank + 1) * E/R)).
  static absl::StatusOr<std::unique_ptr<RoutedExperts>> Create(
      std::unique_ptr<ExpertBlock> local, int32_t num_experts, int32_t hidden,
      const std::vector<comm::Communicator*>& lanes, MoeLayerTimes* times);

  int32_t num_experts() const { return num_experts_; }
  // Tokens routed to each expert (global ids) from this process, since loading.
  std::vector<int64_t> token_counts() const;

  // As ExpertBlock::Forward, with global expert ids; across the group if there is one, on
  // lane `lane`'s communicator.
  absl::Status Forward(const float* x, int64_t tokens, const int32_t* ids, const float* weights,
                       int32_t top_k, float* out, kernels::ThreadPool& pool, int lane = 0);

 private:
  RoutedExperts(std::vector<comm::Communicator*> lanes, int32_t num_experts, int32_t hidden,
                std::unique_ptr<ExpertBlock> local, MoeLayerTimes* times);

  const std::vector<comm::Communicator*> lanes_;  // Empty: every expert is here.
  MoeLayerTimes* const times_;
  const int32_t num_experts_;
  const int32_t per_rank_;
  const int32_t hidden_;
  std::unique_ptr<ExpertBlock> local_;
  std::unique_ptr<std::atomic<int64_t>[]> token_counts_;  // Per global expert.
};

// The counts of `layers` (layer index, its routed experts), for Model::expert_token_counts.
ExpertTokenCounts CollectExpertTokenCounts(
    const std::vector<std::pair<int32_t, const RoutedExperts*>>& layers);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_EXPERT_PARALLEL_H_
