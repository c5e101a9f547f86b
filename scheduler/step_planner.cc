#include "scheduler/step_planner.h"

#include <algorithm>

namespace tessera::scheduler {

std::vector<PlannedChunk> PlanStep(std::span<const SequenceDemand> demands,
                                   const StepPlannerOptions& options) {
  std::vector<PlannedChunk> plan;
  const bool any_decoding = std::any_of(demands.begin(), demands.end(), [](const SequenceDemand& d) {
    return d.decoding && d.pending_tokens > 0;
  });
  int32_t budget = any_decoding && options.max_tokens_per_decode_step > 0
                       ? std::min(options.max_tokens_per_decode_step, options.max_tokens_per_step)
                       : options.max_tokens_per_step;
  auto admit = [&](const SequenceDemand& d) {
    if (d.pending_tokens <= 0 || budget <= 0) return;
    if (static_cast<int32_t>(plan.size()) >= options.max_sequences_per_step) return;
    int32_t take = std::min(d.pending_tokens, budget);
    plan.push_back({d.sequence_id, take});
    budget -= take;
  };
  std::vector<const SequenceDemand*> prompts;
  for (const SequenceDemand& d : demands) {
    if (d.decoding) {
      admit(d);
    } else {
      prompts.push_back(&d);
    }
  }
  if (options.prefill_order == PrefillOrder::kShortestFirst) {
    auto overdue = [&](const SequenceDemand* d) {
      return d->waited_us >= options.max_prefill_wait_us;
    };
    // Stable: overdue prompts, and prompts of equal length, keep their arrival order.
    std::stable_sort(prompts.begin(), prompts.end(),
                     [&](const SequenceDemand* a, const SequenceDemand* b) {
                       bool a_overdue = overdue(a), b_overdue = overdue(b);
                       if (a_overdue != b_overdue) return a_overdue;
                       if (a_overdue) return false;
                       return a->pending_tokens < b->pending_tokens;
                     });
  }
  for (const SequenceDemand* d : prompts) admit(*d);
  return plan;
}

}  // namespace tessera::scheduler
