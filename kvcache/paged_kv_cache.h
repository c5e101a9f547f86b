// Storage for the attention keys and values of every sequence, in fixed-size blocks. A block
// id names the same slot in every layer, so a sequence's block table is one list of ids for
// the whole model. Within a layer, keys and values are separate arrays of
// [block][position in block][kv head][head dim] in fp16 (as llama.cpp stores them), so one
// layer's blocks can be copied out while later layers compute: the layer-by-layer KV handoff.
// Thread-safety: the storage itself is not synchronized; the step loop that owns the cache
// writes only the blocks of sequences in its batch.
#ifndef TESSERA_KVCACHE_PAGED_KV_CACHE_H_
#define TESSERA_KVCACHE_PAGED_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kvcache/block_allocator.h"

namespace tessera::kvcache {

struct KvCacheShape {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;  // Tokens per block.
  int32_t num_blocks = 0;

  int64_t kv_dim() const { return int64_t{num_kv_heads} * head_dim; }
  int64_t block_elements() const { return kv_dim() * block_size; }
  // Bytes one block takes across all layers, keys and values.
  int64_t bytes_per_block() const { return block_elements() * 2 * 2 * num_layers; }
};

class PagedKvCache {
 public:
  // Validates the shape and allocates the blocks (InvalidArgument names a bad field,
  // ResourceExhausted if the memory cannot be had).
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(const KvCacheShape& shape);

  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  const KvCacheShape& shape() const { return shape_; }

  // fp16 keys/values of one block in one layer: block_size rows of kv_dim elements.
  uint16_t* keys(int32_t layer, BlockId block) { return slot(keys_, layer, block); }
  uint16_t* values(int32_t layer, BlockId block) { return slot(values_, layer, block); }
  const uint16_t* keys(int32_t layer, BlockId block) const {
    return const_cast<PagedKvCache*>(this)->keys(layer, block);
  }
  const uint16_t* values(int32_t layer, BlockId block) const {
    return const_cast<PagedKvCache*>(this)->values(layer, block);
  }

 private:
  explicit PagedKvCache(const KvCacheShape& shape);
  uint16_t* slot(std::vector<uint16_t>& pool, int32_t layer, BlockId block);

  KvCacheShape shape_;
  std::vector<uint16_t> keys_;
  std::vector<uint16_t> values_;
};

}  // namespace tessera::kvcache

#endif  // TESSERA_KVCACHE_PAGED_KV_CACHE_H_
