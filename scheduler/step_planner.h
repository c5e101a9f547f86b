// Decides what one model step computes: which sequences take part and how many of their
// tokens. Decoding sequences go first (one token each, so inter-token latency stays flat), then
// prompts are prefilled in chunks that fill the rest of the per-step token budget (chunked
// prefill). Pure logic; thread-compatible.
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
  // How long the sequence has been waiting since it arrived, for PrefillOrder::kShortestFirst.
  int64_t waited_us = 0;
};

struct PlannedChunk {
  int64_t sequence_id = 0;
  int32_t num_tokens = 0;
};

// The order prompts are prefilled in.
enum class PrefillOrder {
  // First come, first served.
  kArrival,
  // Fewest pending tokens first (shortest remaining work, which also puts prompts that hit the
  // prefix cache ahead of long cold ones). Under a TTFT objective this lets many short prompts
  // finish instead of all of them queueing behind one long prompt. A prompt that has waited
  // max_prefill_wait_us goes ahead of the rest, so long prompts are delayed but never starved.
  kShortestFirst,
};

struct StepPlannerOptions {
  int32_t max_tokens_per_step = 512;
  // The token budget of a step that also decodes (0: max_tokens_per_step). A smaller budget
  // bounds how long decoding sequences wait behind prefill chunks (their inter-token latency),
  // at some cost in prefill throughput; steps with only prompts keep the full budget.
  int32_t max_tokens_per_decode_step = 0;
  int32_t max_sequences_per_step = 64;
  PrefillOrder prefill_order = PrefillOrder::kShortestFirst;
  int64_t max_prefill_wait_us = 5'000'000;
};

// Demands come in arrival order. Decodes keep that order; prompts follow prefill_order (ties
// and overdue prompts in arrival order). A sequence with no pending tokens is skipped.
std::vector<PlannedChunk> PlanStep(std::span<const SequenceDemand> demands,
                                   const StepPlannerOptions& options);

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_STEP_PLANNER_H_
