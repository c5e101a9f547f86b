// The byte-level BPE merge loop for one pre-tokenized word: start from one symbol per byte,
// repeatedly merge the adjacent pair with the lowest merge rank (leftmost on ties), as
// llama.cpp's llm_tokenizer_bpe_session does. A heap of candidate pairs over a linked list of
// symbols keeps it O(n log n) in the word length, so long runs (whitespace, repeated
// characters) stay cheap. Not thread-safe: one encoder per calling thread (it keeps scratch
// buffers between words); the Vocab must outlive it.
#ifndef TESSERA_ENGINE_TOKENIZER_BPE_H_
#define TESSERA_ENGINE_TOKENIZER_BPE_H_

#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "engine/tokenizer/vocab.h"

namespace tessera::engine::tokenizer_internal {

class BpeWordEncoder {
 public:
  explicit BpeWordEncoder(const Vocab& vocab) : vocab_(vocab) {}

  // Appends the tokens of `word` (raw bytes) to `out`.
  void Encode(absl::string_view word, std::vector<int32_t>* out);

 private:
  struct Symbol {
    int32_t id;  // -1 when the bytes are not a token.
    int32_t prev;
    int32_t next;
    uint32_t begin;   // First byte in the word.
    uint32_t length;  // 0 once merged into the symbol on its left.
  };
  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t right;
    int32_t left_id;  // The pair's ids when queued; a changed symbol makes it stale.
    int32_t right_id;
  };

  void AddCandidate(int32_t left, int32_t right);
  void AppendSymbol(absl::string_view word, const Symbol& symbol, std::vector<int32_t>* out);

  const Vocab& vocab_;
  std::vector<Symbol> symbols_;
  std::vector<Candidate> heap_;
};

}  // namespace tessera::engine::tokenizer_internal

#endif  // TESSERA_ENGINE_TOKENIZER_BPE_H_
