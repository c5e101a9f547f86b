// ExpertPlacement: where a layer's experts and their redundant copies live across the ranks
// of an expert-parallel group (the EPLB rebalancer's plan).
#include "engine/models/expert_placement.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <numeric>
#include <random>
#include <vector>

namespace tessera::engine {
namespace {

double Max(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

TEST_CASE("ExpertPlacement: contiguous shares, one copy each", "[engine][moe]") {
  const ExpertPlacement p = ExpertPlacement::Contiguous(8, 2);
  CHECK(p.slots_per_rank() == 4);
  CHECK(std::vector<int32_t>(p.experts_on(0).begin(), p.experts_on(0).end()) ==
        std::vector<int32_t>{0, 1, 2, 3});
  CHECK(std::vector<int32_t>(p.experts_on(1).begin(), p.experts_on(1).end()) ==
        std::vector<int32_t>{4, 5, 6, 7});
  for (int32_t e = 0; e < 8; ++e) {
    REQUIRE(p.copies(e).size() == 1);
    CHECK(p.copies(e)[0] == e);
  }
}

TEST_CASE("ExpertPlacement: a hot expert is copied onto another rank and the load evens out",
          "[engine][moe]") {
  // Expert 0 takes 100 tokens, the others 10: contiguously rank 0 carries 130 and rank 1 40.
  const std::vector<int64_t> loads = {100, 10, 10, 10, 10, 10, 10, 10};
  const ExpertPlacement before = ExpertPlacement::Contiguous(8, 2);
  CHECK(Max(before.RankLoads(loads)) == 130.0);
  const ExpertPlacement after = ExpertPlacement::Balanced(loads, 2, 1);
  CHECK(after.slots_per_rank() == 5);
  REQUIRE(after.copies(0).size() == 2);
  CHECK(after.copies(0)[0] / 5 != after.copies(0)[1] / 5);  // On different ranks.
  const std::vector<double> loads_after = after.RankLoads(loads);
  CHECK(loads_after[0] + loads_after[1] == 170.0);
  // Two extra slots: expert 0 gets a copy on each rank (50 tokens each; a third copy would
  // share a rank), the other extra copy goes to expert 1 (5 each): 85 per rank, even.
  CHECK(after.copies(1).size() == 2);
  CHECK(loads_after[0] == 85.0);
  CHECK(loads_after[1] == 85.0);
  CHECK(after == ExpertPlacement::Balanced(loads, 2, 1));  // Deterministic.
}

TEST_CASE("ExpertPlacement: balanced placements keep their invariants on random loads",
          "[engine][moe]") {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 200; ++trial) {
    const int32_t ranks = 1 << (trial % 3);            // 1, 2, 4
    const int32_t experts = ranks * (1 + trial % 16);  // A multiple of the ranks.
    const int32_t redundant = trial % 4;
    std::vector<int64_t> loads(static_cast<size_t>(experts));
    // Zipf-like skew, as real routing has.
    for (int32_t e = 0; e < experts; ++e) loads[e] = static_cast<int64_t>(rng() % 1000 / (1 + e));
    std::shuffle(loads.begin(), loads.end(), rng);
    INFO("trial " << trial << ": " << experts << " experts, " << ranks << " ranks, " << redundant
                  << " redundant");
    const ExpertPlacement p = ExpertPlacement::Balanced(loads, ranks, redundant);
    REQUIRE(p.slots_per_rank() == experts / ranks + redundant);
    int32_t copies = 0;
    double heaviest_copy = 0;
    for (int32_t e = 0; e < experts; ++e) {
      REQUIRE(!p.copies(e).empty());
      copies += static_cast<int32_t>(p.copies(e).size());
      heaviest_copy = std::max(heaviest_copy, static_cast<double>(loads[e]) / p.copies(e).size());
    }
    CHECK(copies == experts + ranks * redundant);
    const std::vector<double> rank_loads = p.RankLoads(loads);
    const double total = std::accumulate(loads.begin(), loads.end(), 0.0);
    // Greedy packing's bound: no rank above the mean by more than one copy's load.
    CHECK(Max(rank_loads) <= total / ranks + heaviest_copy + 1e-9);
  }
}

}  // namespace
}  // namespace tessera::engine
