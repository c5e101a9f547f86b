#include "kvcache/kv_rows.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "common/check.h"

namespace tessera::kvcache {

KvRows KvRows::InCache(const uint8_t* base, const KvCacheLayout& layout,
                       std::span<const BlockId> blocks, int32_t first_position) {
  KvRows rows;
  rows.base_ = base;
  rows.layout_ = layout;
  rows.blocks_ = blocks;
  rows.first_position_ = first_position;
  rows.first_block_index_ = first_position / layout.shape.block_size;
  rows.row_bytes_ = static_cast<size_t>(layout.shape.kv_dim()) * sizeof(uint16_t);
  return rows;
}

KvRows KvRows::Flat(const uint8_t* keys, const uint8_t* values, int64_t kv_dim,
                    int32_t first_position) {
  KvRows rows;
  rows.flat_keys_ = keys;
  rows.flat_values_ = values;
  rows.first_position_ = first_position;
  rows.row_bytes_ = static_cast<size_t>(kv_dim) * sizeof(uint16_t);
  return rows;
}

int32_t KvRows::ContiguousFrom(int32_t p) const {
  if (base_ == nullptr) return std::numeric_limits<int32_t>::max();
  const int32_t block_size = layout_.shape.block_size;
  return block_size - p % block_size;
}

uint8_t* KvRows::Row(bool keys, int32_t layer, int32_t p) const {
  TESSERA_DCHECK(p >= first_position_);
  const uint8_t* row;
  if (base_ == nullptr) {
    row = (keys ? flat_keys_ : flat_values_) + static_cast<size_t>(p - first_position_) * row_bytes_;
  } else {
    const int32_t block_size = layout_.shape.block_size;
    const size_t index = static_cast<size_t>(p / block_size - first_block_index_);
    TESSERA_DCHECK(index < blocks_.size());
    const BlockId block = blocks_[index];
    row = base_ + (keys ? layout_.keys_offset(layer, block) : layout_.values_offset(layer, block)) +
          static_cast<size_t>(p % block_size) * row_bytes_;
  }
  // Views over destinations are made from writable memory; see the header.
  return const_cast<uint8_t*>(row);
}

void CopyKvRows(const KvRows& from, const KvRows& to, int32_t layer, int32_t first,
                int32_t count) {
  TESSERA_CHECK(from.row_bytes() == to.row_bytes());
  const int32_t end = first + count;
  for (int32_t p = first; p < end;) {
    const int32_t run = std::min({end - p, from.ContiguousFrom(p), to.ContiguousFrom(p)});
    const size_t bytes = static_cast<size_t>(run) * from.row_bytes();
    std::memcpy(to.keys(layer, p), from.keys(layer, p), bytes);
    std::memcpy(to.values(layer, p), from.values(layer, p), bytes);
    p += run;
  }
}

}  // namespace tessera::kvcache
