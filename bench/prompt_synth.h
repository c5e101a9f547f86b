// Prompts of an exact token count for trace replay. Traces record lengths, not text, so the
// replayer writes text: words that are each one token of the model's tokenizer and stay one
// token when strung together (" apple orange ..."), so a prompt of n words is n tokens. Words
// come from a generator seeded per request, or, for Mooncake's prompt blocks, per block id:
// requests that share leading block ids share their leading text, so a prefix cache sees the
// trace's real sharing.
// Thread-safety: const methods are thread-safe.
#ifndef TESSERA_BENCH_PROMPT_SYNTH_H_
#define TESSERA_BENCH_PROMPT_SYNTH_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace tessera::bench {

class PromptSynthesizer {
 public:
  // FailedPrecondition if the tokenizer has too few such words (fewer than 256).
  static absl::StatusOr<std::unique_ptr<PromptSynthesizer>> Create(
      const engine::Tokenizer& tokenizer);

  // `tokens` word tokens from the generator seeded with `seed`.
  std::vector<int32_t> Tokens(int64_t tokens, uint64_t seed) const;
  // A prompt of `tokens` tokens made of `block_tokens`-token blocks, one per id (the block of
  // an id is the same text for the same `salt`), cut to `tokens`; blocks beyond the ids are
  // seeded by `seed`.
  std::vector<int32_t> BlockTokens(std::span<const int64_t> block_ids, int64_t block_tokens,
                                   int64_t tokens, uint64_t seed, uint64_t salt = 0) const;
  // The text of word tokens (which encodes back to exactly them).
  std::string Text(std::span<const int32_t> tokens) const;

  size_t words() const { return words_.size(); }

 private:
  PromptSynthesizer(std::vector<int32_t> ids, std::vector<std::string> words);
  void Append(uint64_t seed, int64_t count, std::vector<int32_t>& out) const;

  std::vector<int32_t> ids_;
  std::vector<std::string> words_;  // By position in ids_.
  std::vector<int32_t> index_;      // Token id -> position, or -1.
};

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_PROMPT_SYNTH_H_
