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

TEST_CASE("PlanStep: prompts in arrival order, or shortest first", "[scheduler]") {
  // Arrival order: 1 (900 pending), 2 (decoding), 3 (40: mostly a prefix-cache hit), 4 (200).
  std::vector<SequenceDemand> demands = {
      {1, 900, false, 0}, {2, 1, true, 0}, {3, 40, false, 0}, {4, 200, false, 0}};
  auto ids = [](const std::vector<PlannedChunk>& plan) {
    std::vector<int64_t> out;
    for (const PlannedChunk& c : plan) out.push_back(c.sequence_id);
    return out;
  };
  std::vector<PlannedChunk> fcfs =
      PlanStep(demands, {.max_tokens_per_step = 256, .prefill_order = PrefillOrder::kArrival});
  CHECK(ids(fcfs) == std::vector<int64_t>{2, 1});  // The long prompt takes the whole budget.
  CHECK(fcfs[1].num_tokens == 255);

  std::vector<PlannedChunk> shortest = PlanStep(
      demands, {.max_tokens_per_step = 256, .prefill_order = PrefillOrder::kShortestFirst});
  REQUIRE(ids(shortest) == std::vector<int64_t>{2, 3, 4, 1});
  CHECK(shortest[1].num_tokens == 40);
  CHECK(shortest[2].num_tokens == 200);
  CHECK(shortest[3].num_tokens == 256 - 1 - 40 - 200);
}

TEST_CASE("PlanStep: a step that decodes can have a smaller budget, so decodes wait less",
          "[scheduler]") {
  StepPlannerOptions options{.max_tokens_per_step = 512, .max_tokens_per_decode_step = 128};
  std::vector<SequenceDemand> prompts_only = {{1, 900, false, 0}};
  std::vector<PlannedChunk> plan = PlanStep(prompts_only, options);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].num_tokens == 512);  // Nothing decodes: the full budget.
  std::vector<SequenceDemand> mixed = {{1, 900, false, 0}, {2, 1, true, 0}};
  plan = PlanStep(mixed, options);
  REQUIRE(plan.size() == 2);
  CHECK(plan[0].sequence_id == 2);
  CHECK(plan[1].num_tokens == 127);
  options.max_tokens_per_decode_step = 0;  // Off: one budget.
  CHECK(PlanStep(mixed, options)[1].num_tokens == 511);
}

TEST_CASE("PlanStep: a prompt that has waited too long goes first, so none starves",
          "[scheduler]") {
  StepPlannerOptions options{.max_tokens_per_step = 100,
                             .prefill_order = PrefillOrder::kShortestFirst,
                             .max_prefill_wait_us = 1000};
  std::vector<SequenceDemand> demands = {
      {1, 500, false, 999}, {2, 600, false, 1000}, {3, 10, false, 0}, {4, 700, false, 5000}};
  std::vector<PlannedChunk> plan = PlanStep(demands, options);
  // Overdue 2 and 4 in arrival order, ahead of shorter 3 and 1.
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].sequence_id == 2);
  CHECK(plan[0].num_tokens == 100);
  options.max_tokens_per_step = 2000;
  plan = PlanStep(demands, options);
  REQUIRE(plan.size() == 4);
  CHECK(plan[0].sequence_id == 2);
  CHECK(plan[1].sequence_id == 4);
  CHECK(plan[2].sequence_id == 3);
  CHECK(plan[3].sequence_id == 1);
}

}  // namespace
}  // namespace tessera::scheduler
