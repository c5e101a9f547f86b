#include "engine/runtime/step_loop.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace tessera::engine {
namespace {

using Clock = std::chrono::steady_clock;

double MillisecondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

absl::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
    case FinishReason::kHandoff:
      return "handoff";
  }
  return "";
}

struct StepLoop::Sequence {
  int64_t id;
  GenerationRequest request;
  std::vector<int32_t> tokens;  // Prompt, then generated tokens.
  int32_t computed = 0;         // Tokens whose KV is in the cache.
  int32_t generated = 0;
  bool importing = false;        // KV being copied in by another thread; not scheduled.
  bool matched = false;          // The prefix cache was consulted since the KV was last empty.
  int32_t published = 0;         // Leading full blocks published to the prefix cache.
  kvcache::BlockHash chain = 0;  // Hash of the last published block (the model seed at 0).
  int32_t cached_tokens = 0;     // Prompt tokens taken from the prefix cache.
  std::vector<kvcache::BlockId> swapped;  // Host blocks holding its KV while swapped out.
  std::vector<kvcache::BlockId> blocks;
  Sampler sampler;
  IncrementalDetokenizer detokenizer;
  StopMatcher stop_matcher;
  Clock::time_point arrived = Clock::now();
  std::optional<Clock::time_point> first_scheduled;
  std::optional<Clock::time_point> first_token;

  Sequence(int64_t id, GenerationRequest r, const Tokenizer& tokenizer)
      : id(id),
        request(std::move(r)),
        tokens(request.prompt),
        sampler(request.sampling, request.prompt),
        detokenizer(tokenizer),
        stop_matcher(request.sampling.stop) {
    for (int32_t token : request.generated) Replay(token);
  }

  void Replay(int32_t token) {
    tokens.push_back(token);
    ++generated;
    sampler.Replay(token);
    absl::StatusOr<std::string> piece = detokenizer.Push(token);
    if (piece.ok()) stop_matcher.Push(*piece);
  }

  int32_t pending() const { return static_cast<int32_t>(tokens.size()) - computed; }
  // Past the prompt, tokens are computed one per step, as decoding computes them. A resumed
  // request's replayed tokens thus get exactly the numerics of the run that generated them,
  // and its greedy continuation is the same as that run's (a multi-token chunk would round
  // differently and could flip a near-tie).
  bool decoding() const { return computed >= prompt_size() && pending() >= 1; }
  int32_t plannable() const { return decoding() ? 1 : prompt_size() - computed; }
  int32_t prompt_size() const { return static_cast<int32_t>(request.prompt.size()); }
};

absl::StatusOr<std::unique_ptr<StepLoop>> StepLoop::Create(Model& model, const Tokenizer& tokenizer,
                                                           const StepLoopOptions& options) {
  StepLoopOptions o = options;
  if (o.block_size <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("block_size must be positive, got ", o.block_size));
  const ModelConfig& config = model.config();
  if (o.num_blocks <= 0) {
    int64_t per_context = (config.context_length + o.block_size - 1) / o.block_size;
    int64_t want = per_context * std::max(1, o.planner.max_sequences_per_step);
    int64_t bytes_per_block = KvShapeFor(config, o.block_size, 1).bytes_per_block();
    int64_t cap = (int64_t{1} << 30) / bytes_per_block;
    o.num_blocks = static_cast<int32_t>(std::max<int64_t>(per_context, std::min(want, cap)));
  }
  if (o.host_blocks < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("host_blocks must be >= 0, got ", o.host_blocks));
  }
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<kvcache::PagedKvCache> cache,
                           kvcache::PagedKvCache::Create(
                               KvShapeFor(config, o.block_size, o.num_blocks), o.shared_kv_memory));
  std::unique_ptr<kvcache::PagedKvCache> host_cache;
  if (o.host_blocks > 0) {
    TESSERA_ASSIGN_OR_RETURN(
        host_cache, kvcache::PagedKvCache::Create(KvShapeFor(config, o.block_size, o.host_blocks)));
  }
  return std::unique_ptr<StepLoop>(
      new StepLoop(model, tokenizer, o, std::move(cache), std::move(host_cache)));
}

StepLoop::StepLoop(Model& model, const Tokenizer& tokenizer, const StepLoopOptions& options,
                   std::unique_ptr<kvcache::PagedKvCache> cache,
                   std::unique_ptr<kvcache::PagedKvCache> host_cache)
    : model_(model),
      tokenizer_(tokenizer),
      options_(options),
      cache_(std::move(cache)),
      host_cache_(std::move(host_cache)),
      mover_(std::make_unique<kvcache::PagedBlockMover>(*cache_, host_cache_.get())),
      blocks_(std::make_unique<kvcache::BlockManager>(
          kvcache::BlockManagerOptions{.device_blocks = options.num_blocks,
                                       .host_blocks = options.host_blocks,
                                       .prefix_caching = options.prefix_caching},
          mover_.get())) {
  // Blocks are only interchangeable between identical models and block sizes.
  const ModelConfig& config = model.config();
  hash_seed_ = kvcache::ModelHashSeed(absl::StrCat(config.architecture, "/", config.name, "/",
                                                   config.num_layers, "/", config.hidden_size, "/",
                                                   config.vocab_size, "/", options.block_size));
}

StepLoop::~StepLoop() = default;

absl::StatusOr<std::unique_ptr<StepLoop::Sequence>> StepLoop::Validate(GenerationRequest request) {
  const ModelConfig& config = model_.config();
  if (request.prompt.empty()) return absl::InvalidArgumentError("prompt is empty");
  int64_t total = static_cast<int64_t>(request.prompt.size() + request.generated.size());
  if (total >= config.context_length) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt has ", total, " tokens; the context holds ", config.context_length,
                     " including at least one generated token"));
  }
  auto check_ids = [&](const std::vector<int32_t>& ids, absl::string_view what) {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(what, " token ", i, " has id ", ids[i],
                                                       ", outside the vocabulary of ",
                                                       config.vocab_size));
      }
    }
    return absl::OkStatus();
  };
  TESSERA_RETURN_IF_ERROR(check_ids(request.prompt, "prompt"));
  TESSERA_RETURN_IF_ERROR(check_ids(request.generated, "generated"));
  TESSERA_RETURN_IF_ERROR(ValidateSamplingParams(request.sampling));
  if (static_cast<int32_t>(request.generated.size()) >= request.sampling.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens ", request.sampling.max_tokens,
                                                   " leaves nothing to generate after ",
                                                   request.generated.size(), " generated tokens"));
  }
  return std::make_unique<Sequence>(next_id_++, std::move(request), tokenizer_);
}

absl::StatusOr<int64_t> StepLoop::Add(GenerationRequest request) {
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<Sequence> seq, Validate(std::move(request)));
  int64_t id = seq->id;
  sequences_.emplace(id, std::move(seq));
  order_.push_back(id);
  return id;
}

absl::StatusOr<ImportSlot> StepLoop::AddImporting(GenerationRequest request) {
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<Sequence> seq, Validate(std::move(request)));
  const int32_t positions = static_cast<int32_t>(seq->tokens.size());
  // Blocks of the prompt this loop already has need not travel.
  const int32_t cached = MatchPrefix(*seq);
  if (!EnsureBlocks(*seq, positions)) {
    ReleaseBlocks(*seq);
    return absl::ResourceExhaustedError(
        absl::StrCat("no free KV blocks for ", positions, " imported positions"));
  }
  seq->computed = positions;
  seq->importing = true;
  ++importing_;
  ImportSlot slot{seq->id, positions, cached, seq->blocks};
  sequences_.emplace(seq->id, std::move(seq));
  order_.push_back(slot.id);
  return slot;
}

absl::Status StepLoop::FinishImport(int64_t id, std::span<const int32_t> sampled) {
  auto it = sequences_.find(id);
  if (it == sequences_.end() || !it->second->importing) {
    return absl::NotFoundError(absl::StrCat("no import ", id, " in progress"));
  }
  Sequence& seq = *it->second;
  if (sampled.empty()) return absl::InvalidArgumentError("an import needs its sampled tokens");
  for (int32_t token : sampled) {
    if (token < 0 || token >= model_.config().vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampled token ", token, " is outside the vocabulary"));
    }
  }
  if (seq.tokens.size() + sampled.size() > static_cast<size_t>(model_.config().context_length) ||
      seq.generated + static_cast<int32_t>(sampled.size()) >= seq.request.sampling.max_tokens) {
    return absl::InvalidArgumentError("sampled tokens leave nothing to generate");
  }
  for (int32_t token : sampled) seq.Replay(token);
  seq.importing = false;
  --importing_;
  PublishFullBlocks(seq);  // Imported blocks can serve later requests too.
  return absl::OkStatus();
}

bool StepLoop::Cancel(int64_t id, absl::Status error) {
  if (!sequences_.contains(id)) return false;
  if (error.ok()) {
    Finish(id, FinishReason::kCancelled);
  } else {
    Finish(id, FinishReason::kError, std::move(error));
  }
  return true;
}

void StepLoop::CancelAll(const absl::Status& error) {
  std::vector<int64_t> ids = order_;
  for (int64_t id : ids) Finish(id, FinishReason::kError, error);
}

bool StepLoop::ReleaseHeld(int64_t id) {
  auto it = held_.find(id);
  if (it == held_.end()) return false;
  blocks_->Release(it->second);
  held_.erase(it);
  return true;
}

std::span<const kvcache::BlockId> StepLoop::HeldBlocks(int64_t id) const {
  auto it = held_.find(id);
  if (it == held_.end()) return {};
  return it->second;
}

std::optional<std::string> StepLoop::ExportBlock(kvcache::BlockHash hash) const {
  std::optional<kvcache::BlockId> block = blocks_->DeviceBlockOf(hash);
  if (!block.has_value()) return std::nullopt;
  const size_t bytes = cache_->layout().block_bytes();
  const int32_t layers = cache_->shape().num_layers;
  std::string kv(2 * bytes * layers, '\0');
  char* out = kv.data();
  for (int32_t layer = 0; layer < layers; ++layer) {
    std::memcpy(out, cache_->keys(layer, *block), bytes);
    std::memcpy(out + bytes, cache_->values(layer, *block), bytes);
    out += 2 * bytes;
  }
  return kv;
}

std::vector<kvcache::BlockHash> StepLoop::PromptBlockHashes(std::span<const int32_t> prompt) const {
  if (prompt.empty()) return {};
  return kvcache::PrefixBlockHashes(
      prompt, options_.block_size, hash_seed_,
      (static_cast<int32_t>(prompt.size()) - 1) / options_.block_size);
}

int32_t StepLoop::ImportCachedBlocks(std::span<const kvcache::BlockHash> hashes,
                                     std::span<const std::string> kv) {
  const size_t bytes = cache_->layout().block_bytes();
  const int32_t layers = cache_->shape().num_layers;
  int32_t added = 0;
  for (size_t i = 0; i < hashes.size() && i < kv.size(); ++i) {
    if (kv[i].size() != 2 * bytes * layers) break;
    if (blocks_->DeviceBlockOf(hashes[i]).has_value()) {
      ++added;
      continue;
    }
    absl::StatusOr<kvcache::BlockId> block = blocks_->Allocate();
    if (!block.ok()) break;
    const char* in = kv[i].data();
    for (int32_t layer = 0; layer < layers; ++layer) {
      std::memcpy(cache_->keys(layer, *block), in, bytes);
      std::memcpy(cache_->values(layer, *block), in + bytes, bytes);
      in += 2 * bytes;
    }
    blocks_->Publish(*block, hashes[i]);
    blocks_->Release(*block);  // Cached, unreferenced: the next request takes it.
    ++added;
  }
  return added;
}

int64_t StepLoop::pending_prefill_tokens() const {
  int64_t total = 0;
  for (const auto& [id, seq] : sequences_) {
    if (!seq->importing && !seq->decoding()) total += seq->pending();
  }
  return total;
}

bool StepLoop::EnsureBlocks(Sequence& seq, int32_t positions) {
  const int32_t bs = options_.block_size;
  // The block the next position goes into may be shared (taken from the prefix cache):
  // write into a copy, never into what others read.
  if (seq.computed % bs != 0 && seq.computed / bs < static_cast<int32_t>(seq.blocks.size())) {
    kvcache::BlockId& partial = seq.blocks[seq.computed / bs];
    if (blocks_->IsShared(partial)) {
      absl::StatusOr<kvcache::BlockId> own = blocks_->MakeExclusive(partial);
      if (!own.ok()) return false;
      partial = *own;
    }
  }
  const int32_t need = (positions + bs - 1) / bs;
  while (static_cast<int32_t>(seq.blocks.size()) < need) {
    absl::StatusOr<kvcache::BlockId> block = blocks_->Allocate();
    if (!block.ok()) return false;  // The blocks taken so far stay with the sequence.
    seq.blocks.push_back(*block);
  }
  return true;
}

void StepLoop::ReleaseBlocks(Sequence& seq) {
  blocks_->Release(seq.blocks);
  seq.blocks.clear();
  seq.published = 0;
  seq.chain = hash_seed_;
}

int32_t StepLoop::MatchPrefix(Sequence& seq) {
  seq.matched = true;
  seq.chain = hash_seed_;
  if (!blocks_->prefix_caching() || !seq.blocks.empty()) return 0;
  // At least the prompt's last token is computed here, for its logits.
  const int32_t max_blocks = (seq.prompt_size() - 1) / options_.block_size;
  std::vector<kvcache::BlockHash> hashes =
      kvcache::PrefixBlockHashes(std::span<const int32_t>(seq.tokens).first(seq.prompt_size()),
                                 options_.block_size, hash_seed_, max_blocks);
  seq.blocks = blocks_->AcquirePrefix(hashes);
  const int32_t matched = static_cast<int32_t>(seq.blocks.size());
  if (matched > 0) seq.chain = hashes[matched - 1];
  seq.published = matched;
  seq.computed = matched * options_.block_size;
  return seq.computed;
}

void StepLoop::PublishFullBlocks(Sequence& seq) {
  if (!blocks_->prefix_caching()) return;
  const int32_t bs = options_.block_size;
  const int32_t full = std::min(seq.computed / bs, static_cast<int32_t>(seq.blocks.size()));
  for (; seq.published < full; ++seq.published) {
    seq.chain = kvcache::ChainBlockHash(
        seq.chain,
        std::span<const int32_t>(seq.tokens).subspan(static_cast<size_t>(seq.published) * bs, bs));
    blocks_->Publish(seq.blocks[seq.published], seq.chain);
  }
}

bool StepLoop::PreemptOne(const Sequence& keep, std::span<Sequence* const> busy) {
  for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
    Sequence& victim = *sequences_.at(*it);
    if (&victim == &keep || victim.importing || victim.blocks.empty() || !victim.swapped.empty()) {
      continue;
    }
    if (std::find(busy.begin(), busy.end(), &victim) != busy.end()) continue;
    ++preemptions_;
    if (options_.preemption == StepLoopOptions::Preemption::kSwap) {
      absl::StatusOr<std::vector<kvcache::BlockId>> swapped = blocks_->SwapOut(victim.blocks);
      if (swapped.ok()) {
        victim.swapped = *std::move(swapped);
        victim.blocks.clear();
        return true;
      }
    }
    // Recompute: drop the KV, keep everything else. Its prompt may come back from the prefix
    // cache; its generated tokens are recomputed one per step, as they were decoded.
    ReleaseBlocks(victim);
    victim.computed = 0;
    victim.matched = false;
    return true;
  }
  return false;
}

void StepLoop::Finish(int64_t id, FinishReason reason, absl::Status error, StreamEvent last) {
  auto it = sequences_.find(id);
  TESSERA_CHECK(it != sequences_.end());
  std::unique_ptr<Sequence> seq = std::move(it->second);
  sequences_.erase(it);
  order_.erase(std::find(order_.begin(), order_.end(), id));
  if (seq->importing) --importing_;
  if (reason == FinishReason::kHandoff) {
    held_.emplace(id, std::move(seq->blocks));
  } else {
    ReleaseBlocks(*seq);
  }
  if (!seq->swapped.empty()) blocks_->FreeSwapped(seq->swapped);

  StreamEvent event = std::move(last);
  if (reason != FinishReason::kStop && reason != FinishReason::kHandoff) {
    std::string rest = seq->detokenizer.Flush();
    event.text += seq->stop_matcher.Push(rest) + seq->stop_matcher.Flush();
  }
  event.finish_reason = reason;
  event.error = std::move(error);
  Clock::time_point now = Clock::now();
  event.usage.prompt_tokens = seq->prompt_size();
  event.usage.completion_tokens = seq->generated;
  event.usage.cached_tokens = seq->cached_tokens;
  if (seq->first_token.has_value()) {
    event.usage.time_to_first_token_ms = MillisecondsBetween(seq->arrived, *seq->first_token);
    event.usage.prefill_ms = MillisecondsBetween(*seq->first_scheduled, *seq->first_token);
    event.usage.decode_ms = MillisecondsBetween(*seq->first_token, now);
  }
  if (seq->request.on_event) seq->request.on_event(event);
}

void StepLoop::Emit(Sequence& seq, int32_t token) {
  const SamplingParams& params = seq.request.sampling;
  seq.tokens.push_back(token);
  ++seq.generated;
  seq.sampler.Accept(token);
  if (!seq.first_token.has_value()) seq.first_token = Clock::now();

  bool eos = !params.ignore_eos && tokenizer_.IsEndOfGeneration(token);
  StreamEvent event;
  event.token_ids.push_back(token);
  if (!eos) {
    absl::StatusOr<std::string> piece = seq.detokenizer.Push(token);
    if (piece.ok()) event.text = seq.stop_matcher.Push(*piece);
  }
  FinishReason reason = FinishReason::kNone;
  if (eos) {
    reason = FinishReason::kEos;
  } else if (seq.stop_matcher.stopped()) {
    reason = FinishReason::kStop;
  } else if (seq.generated >= params.max_tokens ||
             static_cast<int32_t>(seq.tokens.size()) >= model_.config().context_length) {
    reason = FinishReason::kLength;
  } else if (seq.request.prefill_only) {
    reason = FinishReason::kHandoff;
  }
  if (reason == FinishReason::kNone) {
    if (seq.request.on_event) seq.request.on_event(event);
  } else {
    // The last token travels in the final event, so every sampled id is reported.
    Finish(seq.id, reason, absl::OkStatus(), std::move(event));
  }
}

absl::Status StepLoop::Step() {
  // Demands in arrival order (the planner may reorder prompts); a sequence whose KV blocks
  // cannot be had waits this step.
  std::vector<scheduler::SequenceDemand> demands;
  const Clock::time_point now = Clock::now();
  for (int64_t id : order_) {
    Sequence& seq = *sequences_.at(id);
    if (seq.importing) continue;
    if (!seq.swapped.empty()) {
      // Swapped out: back in when the device tier has room, else it waits.
      absl::StatusOr<std::vector<kvcache::BlockId>> back = blocks_->SwapIn(seq.swapped);
      if (!back.ok()) continue;
      seq.blocks = *std::move(back);
      // Same content as before the swap: publishing carries on where it stopped (the blocks
      // it had published stayed behind in the cache under their hashes).
      seq.swapped.clear();
    }
    if (!seq.matched) {
      const int32_t cached = MatchPrefix(seq);
      if (!seq.first_scheduled.has_value()) seq.cached_tokens = cached;
      cached_prompt_tokens_ += cached;
    }
    demands.push_back({id, seq.plannable(), seq.decoding(),
                       std::chrono::duration_cast<std::chrono::microseconds>(now - seq.arrived)
                           .count()});
  }
  std::vector<scheduler::PlannedChunk> plan = scheduler::PlanStep(demands, options_.planner);
  std::vector<SequenceStep> batch;
  std::vector<Sequence*> members;
  Sequence* stuck = nullptr;  // The first sequence that could not get its blocks.
  for (const scheduler::PlannedChunk& chunk : plan) {
    Sequence& seq = *sequences_.at(chunk.sequence_id);
    // Preempted earlier in this planning: its plan is stale; it comes back next step.
    if (!seq.matched || !seq.swapped.empty()) continue;
    bool placed = EnsureBlocks(seq, seq.computed + chunk.num_tokens);
    while (!placed && PreemptOne(seq, members)) {
      placed = EnsureBlocks(seq, seq.computed + chunk.num_tokens);
    }
    if (!placed) {
      if (stuck == nullptr) stuck = &seq;
      continue;
    }
    SequenceStep step;
    step.tokens = std::span<const int32_t>(seq.tokens).subspan(seq.computed, chunk.num_tokens);
    step.start_pos = seq.computed;
    step.block_table = seq.blocks;
    step.want_logits = seq.computed + chunk.num_tokens == static_cast<int32_t>(seq.tokens.size());
    if (!seq.first_scheduled.has_value()) seq.first_scheduled = Clock::now();
    batch.push_back(step);
    members.push_back(&seq);
  }
  if (batch.empty()) {
    if (options_.lockstep) TESSERA_RETURN_IF_ERROR(model_.Forward({}, *cache_, {}));
    if (!HasWork()) return absl::OkStatus();
    // Nothing fits even with every other sequence preempted: the first sequence planned needs
    // more KV than the whole device tier holds. Fail it rather than stall everyone.
    if (stuck == nullptr) return absl::OkStatus();  // Only preempted sequences: next step.
    Finish(stuck->id, FinishReason::kError,
           absl::ResourceExhaustedError("not enough KV cache blocks for this request"));
    return absl::OkStatus();
  }
  int64_t wanted = std::count_if(batch.begin(), batch.end(),
                                 [](const SequenceStep& s) { return s.want_logits; });
  logits_.resize(static_cast<size_t>(wanted) * model_.config().vocab_size);
  ForwardOptions forward_options;
  bool any_kv_listener = std::any_of(members.begin(), members.end(), [](const Sequence* seq) {
    return static_cast<bool>(seq->request.on_kv_ready);
  });
  if (any_kv_listener) {
    forward_options.on_layer_done = [&](int32_t layer) {
      for (size_t i = 0; i < batch.size(); ++i) {
        const Sequence& seq = *members[i];
        if (!seq.request.on_kv_ready) continue;
        seq.request.on_kv_ready(
            layer, batch[i].start_pos + static_cast<int32_t>(batch[i].tokens.size()), seq.blocks);
      }
    };
  }
  TESSERA_RETURN_IF_ERROR(model_.Forward(batch, *cache_, logits_, forward_options));

  int64_t row = 0;
  std::vector<std::pair<Sequence*, int32_t>> sampled;
  for (size_t i = 0; i < batch.size(); ++i) {
    Sequence& seq = *members[i];
    seq.computed += static_cast<int32_t>(batch[i].tokens.size());
    PublishFullBlocks(seq);
    if (!batch[i].want_logits) continue;
    std::span<float> logits(logits_.data() + row * model_.config().vocab_size,
                            model_.config().vocab_size);
    ++row;
    sampled.emplace_back(&seq, seq.sampler.Sample(logits));
  }
  for (auto& [seq, token] : sampled) Emit(*seq, token);
  return absl::OkStatus();
}

}  // namespace tessera::engine
