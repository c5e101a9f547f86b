// Continuous batching on one worker: requests join at any step, every step runs the decoding
// sequences plus chunks of waiting prompts under a token budget (scheduler::PlanStep), and a
// sequence leaves the batch the step it finishes. KV blocks come from a BlockManager as
// sequences grow: a prompt whose leading full blocks are cached takes them instead of
// computing them, every full block a sequence computes is published for later requests, and
// when the device tier is full the newest sequence is preempted (its KV dropped and
// recomputed later, with the same numerics), so requests wait rather than fail.
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
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/models/model.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/sampling_params.h"
#include "engine/sampling/stop_matcher.h"
#include "engine/tokenizer/tokenizer.h"
#include "kvcache/block_manager.h"
#include "kvcache/paged_block_mover.h"
#include "kvcache/paged_kv_cache.h"
#include "scheduler/step_planner.h"

namespace tessera::engine {

// kHandoff: a prefill-only request produced its first token and its KV now waits, held, for
// a decode worker to copy it (ReleaseHeld frees it).
enum class FinishReason { kNone, kStop, kLength, kEos, kCancelled, kError, kHandoff };
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
  // Tokens this request already generated elsewhere (a resumed or handed-off request). They
  // are replayed through the sampler, detokenizer and stop matcher without being emitted, so
  // the continuation is what one uninterrupted run would have produced.
  std::vector<int32_t> generated;
  SamplingParams sampling;
  std::function<void(const StreamEvent&)> on_event;
  // Prefill only: stop after the first generated token and hold the KV (kHandoff) instead of
  // decoding, unless the request already ended there (EOS, stop string, max_tokens).
  bool prefill_only = false;
  // Called on the step thread after each layer of each step that computed this request's
  // tokens: positions [0, positions_ready) of `layer` are final in the cache, in `blocks`.
  std::function<void(int32_t layer, int32_t positions_ready,
                     std::span<const kvcache::BlockId> blocks)>
      on_kv_ready;
};

// A sequence whose KV arrives from elsewhere (a KV handoff).
struct ImportSlot {
  int64_t id = 0;
  int32_t positions = 0;  // Prompt plus generated tokens.
  // Positions [0, first_position) came from this loop's own prefix cache; only the rest need
  // copying in.
  int32_t first_position = 0;
  std::vector<kvcache::BlockId> blocks;  // Covers every position.
};

struct StepLoopOptions {
  int32_t block_size = 16;
  int32_t num_blocks =
      0;  // Device tier. 0: enough for max_sequences full contexts, capped at 1 GiB.
  int32_t host_blocks = 0;  // Host tier: evicted cached blocks wait here. 0: none.
  // Reuse the KV of full blocks whose tokens (and everything before them) match a cached
  // block, and skip their prefill.
  bool prefix_caching = true;
  // What preemption does with a sequence's KV when the device tier is full: move it to the
  // host tier and back (kSwap, falling back to kRecompute when the host tier is full), or drop
  // it and compute it again (kRecompute).
  enum class Preemption { kRecompute, kSwap };
  Preemption preemption = Preemption::kRecompute;
  // Keep the KV cache in shared memory, so that decode workers on this host can copy handed-
  // off blocks straight out of it.
  bool shared_kv_memory = false;
  // The model is one rank of an expert-parallel group: every Step() runs the forward pass,
  // with an empty batch when this rank has nothing to compute, because the group's
  // collectives need every rank in every step (the caller steps all ranks together).
  bool lockstep = false;
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
  // Queues a request whose tokens (prompt, then generated) will have their KV copied in by
  // another thread, except a leading part this loop already holds in its prefix cache
  // (ImportSlot::first_position): the returned blocks are reserved for it and the step loop
  // neither touches them nor schedules the request until FinishImport(). Fails like Add(), or
  // with ResourceExhausted if the blocks cannot be had.
  absl::StatusOr<ImportSlot> AddImporting(GenerationRequest request);
  // The import's KV is in place and `sampled` (at least one token) are the tokens the source
  // generated after it; they are replayed, not emitted, and the request joins the batch.
  // NotFound if the request is unknown (cancelled meanwhile), InvalidArgument for bad tokens.
  absl::Status FinishImport(int64_t id, std::span<const int32_t> sampled);
  // Ends a request early; it receives a last event with kCancelled (or kError with `error`).
  // False if unknown.
  bool Cancel(int64_t id, absl::Status error = absl::OkStatus());
  // Ends every live request with kError and `error` (a failed step).
  void CancelAll(const absl::Status& error);
  // Frees the KV of a request that ended with kHandoff. False if unknown.
  bool ReleaseHeld(int64_t id);
  // Block table of a held request (empty if unknown). Stable until ReleaseHeld().
  std::span<const kvcache::BlockId> HeldBlocks(int64_t id) const;
  int32_t held() const { return static_cast<int32_t>(held_.size()); }
  // Prompt tokens (and replayed tokens) not yet computed, over all live requests.
  int64_t pending_prefill_tokens() const;
  // Runs one model step. Errors are bugs or resource failures for the whole step; requests
  // that fail alone get their own kError event instead.
  absl::Status Step();
  // True while a live request can be stepped (imports in progress and held KV are not work).
  bool HasWork() const { return static_cast<int32_t>(sequences_.size()) > importing_; }
  int32_t running() const { return static_cast<int32_t>(sequences_.size()); }
  const kvcache::BlockManager& block_manager() const { return *blocks_; }
  kvcache::BlockManager::Changes TakeKvChanges() { return blocks_->TakeChanges(); }

  // For the cache pool. A held device block's KV as bytes (each layer's keys then values);
  // nullopt if the content is not on the device tier.
  std::optional<std::string> ExportBlock(kvcache::BlockHash hash) const;
  // The chained block hashes of a prompt's full blocks that a request could take from a
  // cache (all but the block holding its last token).
  std::vector<kvcache::BlockHash> PromptBlockHashes(std::span<const int32_t> prompt) const;
  int32_t LeadingHeld(std::span<const kvcache::BlockHash> hashes) const {
    return blocks_->LeadingHeld(hashes);
  }
  // Adds blocks fetched from elsewhere to the prefix cache, as if computed here: `kv[i]` is
  // the content of `hashes[i]`, whose predecessors must already be held. Returns how many
  // were added (stops at the first that does not fit or has the wrong size).
  int32_t ImportCachedBlocks(std::span<const kvcache::BlockHash> hashes,
                             std::span<const std::string> kv);
  // The seed of this loop's block content hashes (model and block size).
  kvcache::BlockHash kv_hash_seed() const { return hash_seed_; }
  int32_t block_size() const { return options_.block_size; }
  int64_t preemptions() const { return preemptions_; }
  // Prompt tokens that requests took from the prefix cache instead of computing.
  int64_t cached_prompt_tokens() const { return cached_prompt_tokens_; }
  int64_t kv_bytes_moved() const { return mover_->bytes_moved(); }
  kvcache::PagedKvCache& cache() { return *cache_; }
  const Model& model() const { return model_; }

 private:
  struct Sequence;
  StepLoop(Model& model, const Tokenizer& tokenizer, const StepLoopOptions& options,
           std::unique_ptr<kvcache::PagedKvCache> cache,
           std::unique_ptr<kvcache::PagedKvCache> host_cache);
  // Takes cached blocks for a sequence that has no KV yet; returns the tokens they cover.
  int32_t MatchPrefix(Sequence& seq);
  // Publishes the sequence's newly completed full blocks.
  void PublishFullBlocks(Sequence& seq);
  // Frees the KV of the newest running sequence other than `keep` and not in `busy`, to be
  // recomputed later. False if there is none.
  bool PreemptOne(const Sequence& keep, std::span<Sequence* const> busy);
  void ReleaseBlocks(Sequence& seq);
  absl::StatusOr<std::unique_ptr<Sequence>> Validate(GenerationRequest request);
  bool EnsureBlocks(Sequence& seq, int32_t positions);
  // `last` carries the token ids and text of the step that ended the request.
  void Finish(int64_t id, FinishReason reason, absl::Status error = absl::OkStatus(),
              StreamEvent last = {});
  void Emit(Sequence& seq, int32_t token);

  Model& model_;
  const Tokenizer& tokenizer_;
  StepLoopOptions options_;
  std::unique_ptr<kvcache::PagedKvCache> cache_;
  std::unique_ptr<kvcache::PagedKvCache> host_cache_;
  std::unique_ptr<kvcache::PagedBlockMover> mover_;
  std::unique_ptr<kvcache::BlockManager> blocks_;
  kvcache::BlockHash hash_seed_ = 0;
  int64_t preemptions_ = 0;
  int64_t cached_prompt_tokens_ = 0;
  int64_t next_id_ = 1;
  std::vector<int64_t> order_;  // Arrival order of live sequences.
  absl::flat_hash_map<int64_t, std::unique_ptr<Sequence>> sequences_;
  absl::flat_hash_map<int64_t, std::vector<kvcache::BlockId>> held_;
  int32_t importing_ = 0;
  std::vector<float> logits_;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_RUNTIME_STEP_LOOP_H_
