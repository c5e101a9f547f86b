// The normalizer and pre-tokenizer of a Hugging Face tokenizer.json, for byte-level BPE models
// (Qwen2/3, DeepSeek-V3, Llama 3, GPT-2 and SmolLM2 families): optional NFC normalization,
// then a sequence of regex splits, each applied to every piece the previous one produced, each
// match and each gap between matches becoming a piece ("Isolated" behaviour).
//
// The `tokenizers` library matches with Oniguruma; Tessera uses RE2, which has the same
// leftmost-first semantics but no lookaround and ASCII-only \s, \d and \w. TranslateOnigPattern
// bridges the two: the Unicode classes are spelled out, and the one lookahead these
// tokenizers use, a final `\s+(?!\S)|\s+`, is matched as `\s+` and then given back its last
// codepoint when a non-space follows (what the lookahead does). ^ and $ match at line
// boundaries, as in Oniguruma, and its m flag becomes RE2's s. Any other lookaround, flag or
// Oniguruma-only escape is refused rather than approximated.
// Thread-safety: immutable after Create(); Split() is safe to call concurrently.
#ifndef TESSERA_ENGINE_TOKENIZER_REGEX_PRE_TOKENIZER_H_
#define TESSERA_ENGINE_TOKENIZER_REGEX_PRE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/pre_tokenizer.h"

namespace re2 {
class RE2;
class StringPiece;
}  // namespace re2

namespace tessera::engine::tokenizer_internal {

struct TranslatedPattern {
  std::string re2;  // RE2 syntax.
  // The pattern ended in `\s+(?!\S)|\s+`, now the last capturing group.
  bool whitespace_lookahead = false;
};

// InvalidArgument for a malformed pattern, Unimplemented (naming the construct) for
// lookaround other than the final whitespace one, \b, or negated Unicode classes inside [].
absl::StatusOr<TranslatedPattern> TranslateOnigPattern(absl::string_view pattern);

class RegexPreTokenizer final : public PreTokenizer {
 public:
  // `patterns` in Oniguruma syntax, applied in order.
  static absl::StatusOr<std::unique_ptr<RegexPreTokenizer>> Create(
      const std::vector<std::string>& patterns, bool nfc);
  ~RegexPreTokenizer() override;

  void Split(absl::string_view text, std::string* normalized,
             std::vector<WordSpan>* words) const override;

 private:
  struct Step {
    std::unique_ptr<re2::RE2> regex;
    bool whitespace_lookahead = false;
  };
  RegexPreTokenizer(std::vector<Step> steps, bool nfc);

  // Appends to *out the pieces of normalized[piece] that `step` cuts it into.
  void SplitPiece(const Step& step, absl::string_view normalized, const WordSpan& piece,
                  std::vector<WordSpan>* out) const;

  // Whether the match at `begin` is the lookahead tail's alternative.
  bool MatchedByTail(const Step& step, const re2::StringPiece& subject, size_t begin) const;

  std::vector<Step> steps_;
  bool nfc_;
};

// Oniguruma's \s: the Unicode White_Space characters.
bool IsOnigWhitespace(uint32_t cpt);

}  // namespace tessera::engine::tokenizer_internal

#endif  // TESSERA_ENGINE_TOKENIZER_REGEX_PRE_TOKENIZER_H_
