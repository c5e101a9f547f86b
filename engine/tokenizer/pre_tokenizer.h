// The pre-tokenizer of byte-level BPE vocabularies with tokenizer.ggml.pre = "smollm": splits
// text into the words BPE merges within, exactly as llama.cpp does for that type. llama.cpp
// applies two regexes in turn:
//   1. \p{N}  (every number codepoint becomes a word of its own), then, within each piece,
//   2. 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// The second has a lookahead, so it is hand-coded here rather than given to RE2. Input bytes
// go through llama.cpp's lenient UTF-8 decoding first (see DecodeUtf8Lenient).
// Thread-safe (stateless).
#ifndef TESSERA_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
#define TESSERA_ENGINE_TOKENIZER_PRE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tessera::engine::tokenizer_internal {

// A word: bytes [offset, offset + length) of the normalized text.
struct WordSpan {
  uint32_t offset;
  uint32_t length;
};

// Replaces *normalized with `text` after lenient UTF-8 decoding and re-encoding (identical to
// `text` when it is valid UTF-8) and *words with its words, in order; they cover all of
// *normalized. Both outputs are cleared first, so callers can reuse them.
void PreTokenizeSmolLm(absl::string_view text, std::string* normalized,
                       std::vector<WordSpan>* words);

// How a tokenizer turns text into words: the GGUF "smollm" splitter above, or the normalizer
// and pre-tokenizer steps of a tokenizer.json (regex_pre_tokenizer.h). Implementations are
// immutable and thread-safe.
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // As PreTokenizeSmolLm: *normalized is the text the words index into.
  virtual void Split(absl::string_view text, std::string* normalized,
                     std::vector<WordSpan>* words) const = 0;
};

std::unique_ptr<PreTokenizer> MakeSmolLmPreTokenizer();

}  // namespace tessera::engine::tokenizer_internal

#endif  // TESSERA_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
