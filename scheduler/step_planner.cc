#include "scheduler/step_planner.h"

#include <algorithm>

namespace tessera::scheduler {

std::vector<PlannedChunk> PlanStep(std::span<const SequenceDemand> demands,
                                   const StepPlannerOptions& options) {
  std::vector<PlannedChunk> plan;
  int32_t budget = options.max_tokens_per_step;
  auto admit = [&](const SequenceDemand& d) {
    if (d.pending_tokens <= 0 || budget <= 0) return;
    if (static_cast<int32_t>(plan.size()) >= options.max_sequences_per_step) return;
    int32_t take = std::min(d.pending_tokens, budget);
    plan.push_back({d.sequence_id, take});
    budget -= take;
  };
  for (const SequenceDemand& d : demands) {
    if (d.decoding) admit(d);
  }
  for (const SequenceDemand& d : demands) {
    if (!d.decoding) admit(d);
  }
  return plan;
}

}  // namespace tessera::scheduler
