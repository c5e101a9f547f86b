#include "engine/tokenizer/bpe.h"

#include <algorithm>
#include <cstdint>

namespace tessera::engine::tokenizer_internal {
namespace {

// Heap order: the top is the lowest rank, then the leftmost pair.
struct LaterCandidate {
  template <typename C>
  bool operator()(const C& a, const C& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

void BpeWordEncoder::Encode(absl::string_view word, std::vector<int32_t>* out) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(word.data());
  const int32_t n = static_cast<int32_t>(word.size());
  if (n == 0) return;
  symbols_.clear();
  heap_.clear();
  for (int32_t i = 0; i < n; ++i) {
    symbols_.push_back(Symbol{vocab_.byte_token(bytes[i]), i - 1, i + 1 < n ? i + 1 : -1,
                              static_cast<uint32_t>(i), 1});
  }
  for (int32_t i = 0; i + 1 < n; ++i) AddCandidate(i, i + 1);

  while (!heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end(), LaterCandidate());
    const Candidate c = heap_.back();
    heap_.pop_back();
    Symbol& left = symbols_[c.left];
    Symbol& right = symbols_[c.right];
    // Stale: one side was merged away or has grown since the pair was queued.
    if (left.length == 0 || right.length == 0 || left.next != c.right || left.id != c.left_id ||
        right.id != c.right_id) {
      continue;
    }
    left.id = vocab_.FindMerge(c.left_id, c.right_id)->result;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols_[right.next].prev = c.left;
    if (left.prev >= 0) AddCandidate(left.prev, c.left);
    if (left.next >= 0) AddCandidate(c.left, left.next);
  }

  // Symbol 0 only ever absorbs symbols to its right, so it heads the list.
  for (int32_t i = 0; i >= 0; i = symbols_[i].next) AppendSymbol(word, symbols_[i], out);
}

void BpeWordEncoder::AddCandidate(int32_t left, int32_t right) {
  const int32_t left_id = symbols_[left].id;
  const int32_t right_id = symbols_[right].id;
  if (left_id < 0 || right_id < 0) return;
  const Vocab::Merge* merge = vocab_.FindMerge(left_id, right_id);
  if (merge == nullptr) return;
  heap_.push_back(Candidate{merge->rank, left, right, left_id, right_id});
  std::push_heap(heap_.begin(), heap_.end(), LaterCandidate());
}

void BpeWordEncoder::AppendSymbol(absl::string_view word, const Symbol& symbol,
                                  std::vector<int32_t>* out) {
  if (symbol.id >= 0) {
    out->push_back(symbol.id);
    return;
  }
  // Not a token (a byte the vocabulary lacks, or a merge whose result it lacks): llama.cpp
  // then looks up each byte of the symbol's byte-level spelling on its own.
  for (uint32_t k = symbol.begin; k < symbol.begin + symbol.length; ++k) {
    for (int32_t id : vocab_.byte_fallback(static_cast<uint8_t>(word[k]))) out->push_back(id);
  }
}

}  // namespace tessera::engine::tokenizer_internal
