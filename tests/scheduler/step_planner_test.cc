#include "scheduler/step_planner.h"

#include <catch2/catch.hpp>

namespace tessera::scheduler {
namespace {

TEST_CASE("PlanStep: decodes go first, then prompts fill the token budget in order",
          "[scheduler]") {
  std::vector<SequenceDemand> demands = {
      {1, 300, false}, {2, 1, true}, {3, 500, false}, {4, 1, true}, {5, 0, false}};
  StepPlannerOptions options{.max_tokens_per_step = 512, .max_sequences_per_step = 8};
  std::vector<PlannedChunk> plan = PlanStep(demands, options);
  REQUIRE(plan.size() == 4);
  CHECK(plan[0].sequence_id == 2);
  CHECK(plan[1].sequence_id == 4);
  CHECK(plan[2].sequence_id == 1);
  CHECK(plan[2].num_tokens == 300);
  CHECK(plan[3].sequence_id == 3);
  CHECK(plan[3].num_tokens == 512 - 2 - 300);  // Chunked: the rest waits for the next step.
}

TEST_CASE("PlanStep: the sequence limit and the budget both bind", "[scheduler]") {
  std::vector<SequenceDemand> demands;
  for (int i = 0; i < 10; ++i) demands.push_back({i, 1, true});
  CHECK(PlanStep(demands, {.max_tokens_per_step = 512, .max_sequences_per_step = 3}).size() == 3);
  CHECK(PlanStep(demands, {.max_tokens_per_step = 4, .max_sequences_per_step = 64}).size() == 4);
  CHECK(PlanStep({}, {}).empty());
}

}  // namespace
}  // namespace tessera::scheduler
