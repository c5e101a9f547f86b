// Locates the fp16 key and value rows of one sequence's positions, wherever they are stored:
// in a paged cache (this process's, or a peer's mapped through shared memory) through a block
// table, or in a flat [position][kv_dim] buffer (a KV message on the wire). CopyKvRows moves
// positions between any two of these in runs that stay inside a block on both sides, so the
// two sides may even use different block sizes.
// Thread-safety: plain views; the caller guarantees nobody writes the rows being copied.
#ifndef TESSERA_KVCACHE_KV_ROWS_H_
#define TESSERA_KVCACHE_KV_ROWS_H_

#include <cstdint>
#include <span>

#include "kvcache/block_allocator.h"
#include "kvcache/paged_kv_cache.h"

namespace tessera::kvcache {

class KvRows {
 public:
  // Positions starting at `first_position` live in `blocks` (blocks[0] holds the block of
  // first_position) of a cache with `layout` whose storage starts at `base`.
  static KvRows InCache(const uint8_t* base, const KvCacheLayout& layout,
                        std::span<const BlockId> blocks, int32_t first_position);
  // Positions starting at `first_position` are consecutive rows of `kv_dim` fp16 values.
  static KvRows Flat(const uint8_t* keys, const uint8_t* values, int64_t kv_dim,
                     int32_t first_position);

  // Rows from position `p` on that are contiguous in memory.
  int32_t ContiguousFrom(int32_t p) const;
  // Precondition: p lies in the located range. The storage is writable when the view was
  // made over writable memory (a destination).
  uint8_t* keys(int32_t layer, int32_t p) const { return Row(true, layer, p); }
  uint8_t* values(int32_t layer, int32_t p) const { return Row(false, layer, p); }
  size_t row_bytes() const { return row_bytes_; }

 private:
  KvRows() = default;
  uint8_t* Row(bool keys, int32_t layer, int32_t p) const;

  const uint8_t* base_ = nullptr;
  const uint8_t* flat_keys_ = nullptr;
  const uint8_t* flat_values_ = nullptr;
  KvCacheLayout layout_;
  std::span<const BlockId> blocks_;
  int32_t first_position_ = 0;
  int32_t first_block_index_ = 0;
  size_t row_bytes_ = 0;
};

// Copies positions [first, first + count) of `layer` from `from` to `to`. Precondition: both
// locate those positions and have the same row size.
void CopyKvRows(const KvRows& from, const KvRows& to, int32_t layer, int32_t first,
                int32_t count);

}  // namespace tessera::kvcache

#endif  // TESSERA_KVCACHE_KV_ROWS_H_
