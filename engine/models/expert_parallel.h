// A layer's routed experts, in this process or spread over an expert-parallel group. In a
// group, each of R ranks (processes) holds E/R of the layer's experts (plus copies of hot
// ones when rebalancing), and every rank runs attention on its own sequences. Per MoE layer:
//   1. each rank sends every routed (token, expert) row to a rank holding that expert
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
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "comm/communicator.h"
#include "engine/models/compute_baton.h"
#include "engine/models/expert_placement.h"
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
  std::atomic<int64_t> expert_rows{0};  // Rows this rank's experts computed.
  std::atomic<int64_t> split_steps{0};  // Steps run as two micro-batches (overlap).
};

// Adds the wall time from construction to destruction to a phase of `times` (nothing when
// `times` is null).
class PhaseTimer {
 public:
  PhaseTimer(MoeLayerTimes* times, std::atomic<int64_t> MoeLayerTimes::*phase)
      : counter_(times == nullptr ? nullptr : &(times->*phase)),
        start_(std::chrono::steady_clock::now()) {}
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

// Builds the block for the given experts (global ids, in slot order): how a rank loads its
// share of a layer, and new copies when the rebalancer moves them.
using ExpertFactory =
    std::function<absl::StatusOr<std::unique_ptr<ExpertBlock>>(std::span<const int32_t> experts)>;

// The optional rebalancer (EPLB). Every `interval` steps the group sums the tokens each expert
// received since the last time, and all ranks place `redundant` extra copies each of the
// hottest experts (ExpertPlacement::Balanced), loading the weights of the experts that moved
// to them. A token goes to its expert's copy on its own rank if there is one, else to one of
// its copies by token index. The results do not change: copies hold the same weights.
struct ExpertBalancing {
  int32_t redundant = 0;  // Extra slots per rank.
  int32_t interval = 0;   // Steps between rebalances; 0: never.
};

class RoutedExperts {
 public:
  // Loads the routed experts under `prefix` ("<prefix><e>.gate_proj.weight", ...) from
  // `checkpoint`, which must outlive this when rebalancing. See Create.
  static absl::StatusOr<std::unique_ptr<RoutedExperts>> Load(
      const HfCheckpoint& checkpoint, const std::string& prefix, int64_t num_experts,
      int64_t hidden, int64_t intermediate, const std::vector<comm::Communicator*>& lanes,
      MoeLayerTimes* times, ExpertBalancing balancing = {});

  // `num_experts` experts: all of them here without a group; with an expert-parallel group
  // (`lanes`: its communicator for each lane, all over the same ranks) this rank's share,
  // global ids [rank * E/R, (rank + 1) * E/R) until a rebalance moves them. InvalidArgument
  // if E does not split evenly over the group, or rebalancing is asked with two lanes.
  // `times` (may be null) receives the phases' times.
  static absl::StatusOr<std::unique_ptr<RoutedExperts>> Create(
      ExpertFactory factory, int32_t num_experts, int32_t hidden,
      const std::vector<comm::Communicator*>& lanes, MoeLayerTimes* times,
      ExpertBalancing balancing = {});

  int32_t num_experts() const { return num_experts_; }
  // Tokens routed to each expert (global ids) from this process, since loading.
  std::vector<int64_t> token_counts() const;
  // Rows this rank's experts computed (its share of the group's expert work), since loading.
  int64_t rows_computed() const { return rows_computed_.load(std::memory_order_relaxed); }
  // The current placement (changes only inside Forward).
  const ExpertPlacement& placement() const { return placement_; }

  // As ExpertBlock::Forward, with global expert ids; across the group if there is one, on
  // lane `lane`'s communicator. With a `baton` (held by the caller), the other lane computes
  // while this one waits in the dispatch and the combine.
  absl::Status Forward(const float* x, int64_t tokens, const int32_t* ids, const float* weights,
                       int32_t top_k, float* out, kernels::ThreadPool& pool, int lane = 0,
                       ComputeBaton* baton = nullptr);

 private:
  RoutedExperts(ExpertFactory factory, std::vector<comm::Communicator*> lanes, int32_t num_experts,
                int32_t hidden, MoeLayerTimes* times, ExpertBalancing balancing);
  // Every `interval` calls: agree on the loads and move copies.
  absl::Status MaybeRebalance(comm::Communicator& group);

  ExpertFactory factory_;
  const std::vector<comm::Communicator*> lanes_;  // Empty: every expert is here.
  MoeLayerTimes* const times_;
  const int32_t num_experts_;
  const int32_t hidden_;
  const ExpertBalancing balancing_;
  ExpertPlacement placement_;
  std::unique_ptr<ExpertBlock> local_;
  std::unique_ptr<std::atomic<int64_t>[]> token_counts_;  // Per global expert.
  std::atomic<int64_t> rows_computed_{0};
  int64_t calls_ = 0;
  std::vector<int64_t> window_;  // Tokens per expert since the last rebalance.
};

// The counts of `layers` (layer index, its routed experts), for Model::expert_token_counts.
ExpertTokenCounts CollectExpertTokenCounts(
    const std::vector<std::pair<int32_t, const RoutedExperts*>>& layers);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_EXPERT_PARALLEL_H_
