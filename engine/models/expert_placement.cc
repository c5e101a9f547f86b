#include "engine/models/expert_placement.h"

#include <algorithm>

#include "common/check.h"

namespace tessera::engine {

ExpertPlacement::ExpertPlacement(int32_t num_experts, int32_t ranks,
                                 std::vector<int32_t> slot_expert)
    : num_experts_(num_experts),
      ranks_(ranks),
      slots_per_rank_(static_cast<int32_t>(slot_expert.size()) / ranks),
      slot_expert_(std::move(slot_expert)),
      copies_(static_cast<size_t>(num_experts)) {
  for (size_t slot = 0; slot < slot_expert_.size(); ++slot) {
    copies_[static_cast<size_t>(slot_expert_[slot])].push_back(static_cast<int32_t>(slot));
  }
}

ExpertPlacement ExpertPlacement::Contiguous(int32_t num_experts, int32_t ranks) {
  TESSERA_CHECK(ranks > 0 && num_experts % ranks == 0);
  std::vector<int32_t> slots(static_cast<size_t>(num_experts));
  for (int32_t e = 0; e < num_experts; ++e) slots[e] = e;
  return ExpertPlacement(num_experts, ranks, std::move(slots));
}

ExpertPlacement ExpertPlacement::Balanced(std::span<const int64_t> loads, int32_t ranks,
                                          int32_t redundant) {
  const int32_t experts = static_cast<int32_t>(loads.size());
  TESSERA_CHECK(ranks > 0 && experts % ranks == 0 && redundant >= 0);
  const int32_t per_rank = experts / ranks + redundant;
  // 1. Copies: one each, then the extra ones to the most loaded per copy. More copies than
  // ranks would put two on one rank, which helps nothing (a rank uses its own copy), so an
  // expert gets at most one per rank while any expert can take more.
  std::vector<int32_t> count(static_cast<size_t>(experts), 1);
  for (int32_t extra = 0; extra < ranks * redundant; ++extra) {
    int32_t best = -1;
    for (bool capped : {true, false}) {
      for (int32_t e = 0; e < experts; ++e) {
        if (capped && count[e] >= ranks) continue;
        // loads[e] / count[e] > loads[best] / count[best], in integers.
        if (best < 0 || loads[e] * count[best] > loads[best] * count[e]) best = e;
      }
      if (best >= 0) break;
    }
    ++count[best];
  }
  // 2. Copies heaviest first, each to the least loaded rank with room.
  struct Copy {
    int32_t expert;
    double load;
  };
  std::vector<Copy> order;
  for (int32_t e = 0; e < experts; ++e) {
    for (int32_t c = 0; c < count[e]; ++c) {
      order.push_back({e, static_cast<double>(loads[e]) / count[e]});
    }
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const Copy& a, const Copy& b) { return a.load > b.load; });
  std::vector<double> rank_load(static_cast<size_t>(ranks), 0.0);
  std::vector<std::vector<int32_t>> held(static_cast<size_t>(ranks));
  for (const Copy& copy : order) {
    int32_t pick = -1;
    for (bool allow_twice : {false, true}) {
      for (int32_t r = 0; r < ranks; ++r) {
        if (static_cast<int32_t>(held[r].size()) >= per_rank) continue;
        const bool has = std::find(held[r].begin(), held[r].end(), copy.expert) != held[r].end();
        if (has && !allow_twice) continue;
        if (pick < 0 || rank_load[r] < rank_load[pick]) pick = r;
      }
      if (pick >= 0) break;
    }
    held[pick].push_back(copy.expert);
    rank_load[pick] += copy.load;
  }
  std::vector<int32_t> slots;
  for (std::vector<int32_t>& mine : held) {
    std::sort(mine.begin(), mine.end());
    slots.insert(slots.end(), mine.begin(), mine.end());
  }
  return ExpertPlacement(experts, ranks, std::move(slots));
}

std::vector<double> ExpertPlacement::RankLoads(std::span<const int64_t> loads) const {
  std::vector<double> per_rank(static_cast<size_t>(ranks_), 0.0);
  for (int32_t e = 0; e < num_experts_; ++e) {
    const double share = static_cast<double>(loads[e]) / copies_[e].size();
    for (int32_t slot : copies_[e]) per_rank[slot / slots_per_rank_] += share;
  }
  return per_rank;
}

}  // namespace tessera::engine
