// Decides what one model step computes: which sequences take part and how many of their
// tokens. Decoding sequences go first (one token each, so inter-token latency stays flat), then
// prompts are prefilled in arrival order in chunks that fill the rest of the per-step token
// budget (chunked prefill). Pure logic; thread-compatible.
#ifndef TESSERA_SCHEDULER_STEP_PLANNER_H_
#define TESSERA_SCHEDULER_STEP_PLANNER_H_

#include <cstdint>
#include <span>
#include <vector>

namespace tessera::scheduler {

struct SequenceDemand {
  int64_t sequence_id = 0;
  // Tokens the sequence still needs computed: the rest of its prompt while prefilling, 1 while
  // decoding.
  int32_t pending_tokens = 0;
  bool decoding = false;
};

struct PlannedChunk {
  int64_t sequence_id = 0;
  int32_t num_tokens = 0;
};

struct StepPlannerOptions {
  int32_t max_tokens_per_step = 512;
  int32_t max_sequences_per_step = 64;
};

// Sequences keep their relative order within each class (decode, then prefill). A sequence
// with no pending tokens is skipped.
std::vector<PlannedChunk> PlanStep(std::span<const SequenceDemand> demands,
                                   const StepPlannerOptions& options);

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_STEP_PLANNER_H_
