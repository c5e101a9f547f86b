// Where the copies of a layer's experts live across an expert-parallel group. Each of R ranks
// has the same number of slots; each slot holds one (logical) expert. Without redundancy rank
// r holds experts [r * E/R, (r + 1) * E/R). The rebalancer (EPLB, as in DeepSeek-V3's
// serving) gives each rank `redundant` extra slots, copies the hottest experts into them so
// that each copy carries a similar share of the tokens, and packs the copies onto ranks so
// that their loads come out even. Every rank computes the same placement from the same
// (group-wide) loads, so no placement ever has to be sent.
// Thread-safety: immutable value.
#ifndef TESSERA_ENGINE_MODELS_EXPERT_PLACEMENT_H_
#define TESSERA_ENGINE_MODELS_EXPERT_PLACEMENT_H_

#include <cstdint>
#include <span>
#include <vector>

namespace tessera::engine {

class ExpertPlacement {
 public:
  // Rank r holds experts [r * E/R, (r + 1) * E/R). Precondition: R divides E.
  static ExpertPlacement Contiguous(int32_t num_experts, int32_t ranks);
  // E + R * redundant slots for `loads` (tokens per expert, E of them): each expert gets one
  // copy, the extra copies go one at a time to the expert with the most tokens per copy (at
  // most one copy per rank while others can take one), then copies are placed heaviest first
  // on the least loaded rank with a free slot (and not already holding that expert, when
  // there is such a rank). Deterministic.
  static ExpertPlacement Balanced(std::span<const int64_t> loads, int32_t ranks, int32_t redundant);

  int32_t num_experts() const { return num_experts_; }
  int32_t ranks() const { return ranks_; }
  int32_t slots_per_rank() const { return slots_per_rank_; }
  // The experts in rank r's slots, in slot order (ascending expert ids).
  std::span<const int32_t> experts_on(int32_t rank) const {
    return {slot_expert_.data() + rank * slots_per_rank_, static_cast<size_t>(slots_per_rank_)};
  }
  // The global slots (rank * slots_per_rank + slot) holding `expert`, ascending.
  std::span<const int32_t> copies(int32_t expert) const { return copies_[expert]; }

  // Tokens per rank if each expert's tokens split evenly over its copies.
  std::vector<double> RankLoads(std::span<const int64_t> loads) const;

  bool operator==(const ExpertPlacement& other) const {
    return ranks_ == other.ranks_ && slot_expert_ == other.slot_expert_;
  }

 private:
  ExpertPlacement(int32_t num_experts, int32_t ranks, std::vector<int32_t> slot_expert);

  int32_t num_experts_ = 0;
  int32_t ranks_ = 0;
  int32_t slots_per_rank_ = 0;
  std::vector<int32_t> slot_expert_;          // [ranks * slots_per_rank]
  std::vector<std::vector<int32_t>> copies_;  // Per expert: its global slots.
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_EXPERT_PLACEMENT_H_
