#include "bench/prompt_synth.h"

#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tessera::bench {

absl::StatusOr<std::unique_ptr<PromptSynthesizer>> PromptSynthesizer::Create(
    const engine::Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  std::vector<std::string> words;
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    absl::StatusOr<std::string> bytes = tokenizer.TokenBytes(id);
    if (!bytes.ok() || bytes->size() < 4 || bytes->size() > 9 || (*bytes)[0] != ' ') continue;
    bool lower = true;
    for (size_t i = 1; i < bytes->size(); ++i) lower = lower && absl::ascii_islower((*bytes)[i]);
    if (!lower) continue;
    // One token alone, and still one token after another word (no merge across the space).
    if (tokenizer.Encode(*bytes, false) != std::vector<int32_t>{id}) continue;
    if (tokenizer.Encode(absl::StrCat(" the", *bytes), false).size() != 2) continue;
    ids.push_back(id);
    words.push_back(*std::move(bytes));
  }
  if (ids.size() < 256) {
    return absl::FailedPreconditionError(
        absl::StrCat("the tokenizer has only ", ids.size(),
                     " single-token lowercase words; prompts of exact "
                     "lengths need at least 256"));
  }
  return std::unique_ptr<PromptSynthesizer>(
      new PromptSynthesizer(std::move(ids), std::move(words)));
}

PromptSynthesizer::PromptSynthesizer(std::vector<int32_t> ids, std::vector<std::string> words)
    : ids_(std::move(ids)), words_(std::move(words)) {
  int32_t largest = 0;
  for (int32_t id : ids_) largest = std::max(largest, id);
  index_.assign(static_cast<size_t>(largest) + 1, -1);
  for (size_t i = 0; i < ids_.size(); ++i) index_[ids_[i]] = static_cast<int32_t>(i);
}

void PromptSynthesizer::Append(uint64_t seed, int64_t count, std::vector<int32_t>& out) const {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, ids_.size() - 1);
  for (int64_t i = 0; i < count; ++i) out.push_back(ids_[pick(rng)]);
}

std::vector<int32_t> PromptSynthesizer::Tokens(int64_t tokens, uint64_t seed) const {
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(std::max<int64_t>(tokens, 0)));
  Append(seed, tokens, out);
  return out;
}

std::vector<int32_t> PromptSynthesizer::BlockTokens(std::span<const int64_t> block_ids,
                                                    int64_t block_tokens, int64_t tokens,
                                                    uint64_t seed, uint64_t salt) const {
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(std::max<int64_t>(tokens, 0)));
  for (int64_t id : block_ids) {
    if (static_cast<int64_t>(out.size()) >= tokens) break;
    // Block seeds are kept apart from request seeds by their top bit.
    Append(((static_cast<uint64_t>(id) + salt * 0xD1B54A32D192ED03ULL) * 0x9E3779B97F4A7C15ULL) |
               (uint64_t{1} << 63),
           std::min(block_tokens, tokens - static_cast<int64_t>(out.size())), out);
  }
  if (static_cast<int64_t>(out.size()) < tokens) {
    Append(seed, tokens - static_cast<int64_t>(out.size()), out);
  }
  return out;
}

std::string PromptSynthesizer::Text(std::span<const int32_t> tokens) const {
  std::string text;
  for (int32_t id : tokens) {
    if (id >= 0 && id < static_cast<int32_t>(index_.size()) && index_[id] >= 0) {
      text += words_[static_cast<size_t>(index_[id])];
    }
  }
  return text;
}

}  // namespace tessera::bench
