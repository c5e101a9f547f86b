// Continuous batching on one worker: requests join at any step, every step runs the decoding
// sequences plus chunks of waiting prompts under a token budget (scheduler::PlanStep), and a
// sequence leaves the batch the step it finishes. KV blocks are taken as sequences grow and
// returned when they finish.
//
// Thread-safety: owned by one thread (the step thread). Add(), Cancel() and Step() must be
// called from it; serving code hands requests over through a queue.
#ifndef TESSERA_ENGINE_RUNTIME_STEP_LOOP_H_
#define TESSERA_ENGINE_RUNTIME_STEP_LOOP_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/models/model.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/sampling_params.h"
#include "engine/sampling/stop_matcher.h"
#include "engine/tokenizer/tokenizer.h"
#include "kvcache/block_allocator.h"
#include "kvcache/paged_kv_cache.h"
#include "scheduler/step_planner.h"

namespace tessera::engine {

enum class FinishReason { kNone, kStop, kLength, kEos, kCancelled, kError };
absl::string_view FinishReasonName(FinishReason reason);

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;
  double time_to_first_token_ms = 0;
  double prefill_ms = 0;  // First scheduled to first token.
  double decode_ms = 0;   // First token to finish.
};

// What a request receives after each step that produced something for it.
struct StreamEvent {
  std::vector<int32_t> token_ids;
  std::string text;  // Whole UTF-8; held back across stop-string prefixes.
  FinishReason finish_reason = FinishReason::kNone;  // Set on the last event only.
  absl::Status error;                                // With kError.
  Usage usage;                                       // Complete on the last event.
};

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  std::function<void(const StreamEvent&)> on_event;
};

struct StepLoopOptions {
  int32_t block_size = 16;
  int32_t num_blocks = 0;  // 0: enough for max_sequences full contexts, capped at 1 GiB.
  scheduler::StepPlannerOptions planner;
};

class StepLoop {
 public:
  static absl::StatusOr<std::unique_ptr<StepLoop>> Create(Model& model, const Tokenizer& tokenizer,
                                                          const StepLoopOptions& options);

  ~StepLoop();
  StepLoop(const StepLoop&) = delete;
  StepLoop& operator=(const StepLoop&) = delete;

  // Queues a request. InvalidArgument for an empty prompt, a prompt that leaves no room in the
  // context, bad token ids or bad sampling parameters; nothing is queued then.
  absl::StatusOr<int64_t> Add(GenerationRequest request);
  // Ends a request early; it receives a last event with kCancelled. False if unknown.
  bool Cancel(int64_t id);
  // Runs one model step. Errors are bugs or resource failures for the whole step; requests
  // that fail alone get their own kError event instead.
  absl::Status Step();
  bool HasWork() const { return !sequences_.empty(); }
  int32_t running() const { return static_cast<int32_t>(sequences_.size()); }
  const kvcache::BlockAllocator& allocator() const { return allocator_; }
  const Model& model() const { return model_; }

 private:
  struct Sequence;
  StepLoop(Model& model, const Tokenizer& tokenizer, const StepLoopOptions& options,
           std::unique_ptr<kvcache::PagedKvCache> cache);
  bool EnsureBlocks(Sequence& seq, int32_t positions);
  void Finish(int64_t id, FinishReason reason, absl::Status error = absl::OkStatus());
  void Emit(Sequence& seq, int32_t token);

  Model& model_;
  const Tokenizer& tokenizer_;
  StepLoopOptions options_;
  std::unique_ptr<kvcache::PagedKvCache> cache_;
  kvcache::BlockAllocator allocator_;
  int64_t next_id_ = 1;
  std::vector<int64_t> order_;  // Arrival order of live sequences.
  absl::flat_hash_map<int64_t, std::unique_ptr<Sequence>> sequences_;
  std::vector<float> logits_;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_RUNTIME_STEP_LOOP_H_
