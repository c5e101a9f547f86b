// Storage for the attention keys and values of every sequence, in fixed-size blocks. A block
// id names the same slot in every layer, so a sequence's block table is one list of ids for
// the whole model. Within a layer, keys and values are separate arrays of
// [block][position in block][kv head][head dim] in fp16 (as llama.cpp stores them), so one
// layer's blocks can be copied out while later layers compute: the layer-by-layer KV handoff.
// The storage is private memory, or a shared-memory region that other processes on the host
// map read-only (see KvCacheLayout) to copy handed-off blocks out directly.
// Thread-safety: the storage itself is not synchronized; the step loop that owns the cache
// writes only the blocks of sequences in its batch.
#ifndef TESSERA_KVCACHE_PAGED_KV_CACHE_H_
#define TESSERA_KVCACHE_PAGED_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/huge_page_arena.h"
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

// Where a block's keys and values sit in the cache's storage: all layers' keys, then all
// layers' values, each [layer][block][position][kv_dim]. Shared with readers in other
// processes, which compute offsets into the mapped region with it.
struct KvCacheLayout {
  KvCacheShape shape;

  size_t total_bytes() const { return 2 * half_elements() * sizeof(uint16_t); }
  size_t keys_offset(int32_t layer, int32_t block) const {
    return element_index(layer, block) * sizeof(uint16_t);
  }
  size_t values_offset(int32_t layer, int32_t block) const {
    return (half_elements() + element_index(layer, block)) * sizeof(uint16_t);
  }
  size_t block_bytes() const { return static_cast<size_t>(shape.block_elements()) * 2; }

 private:
  size_t half_elements() const {
    return static_cast<size_t>(shape.block_elements()) * shape.num_blocks * shape.num_layers;
  }
  size_t element_index(int32_t layer, int32_t block) const {
    return (static_cast<size_t>(layer) * shape.num_blocks + block) * shape.block_elements();
  }
};

// Checks every field of a shape (InvalidArgument names the bad one).
absl::Status ValidateKvCacheShape(const KvCacheShape& shape);

class SharedMemoryRegion;

class PagedKvCache {
 public:
  // Validates the shape and allocates the blocks (InvalidArgument names a bad field,
  // ResourceExhausted if the memory cannot be had). With `shared`, the storage is a
  // shared-memory region whose name shared_memory_name() gives.
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(const KvCacheShape& shape,
                                                              bool shared = false);
  ~PagedKvCache();

  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  const KvCacheShape& shape() const { return layout_.shape; }
  const KvCacheLayout& layout() const { return layout_; }
  // The whole storage, laid out as layout() says.
  uint8_t* data() { return base_; }
  const uint8_t* data() const { return base_; }
  // Empty unless created shared.
  std::string shared_memory_name() const;

  // fp16 keys/values of one block in one layer: block_size rows of kv_dim elements.
  uint16_t* keys(int32_t layer, BlockId block) {
    return at(layout_.keys_offset(Checked(layer, block), block));
  }
  uint16_t* values(int32_t layer, BlockId block) {
    return at(layout_.values_offset(Checked(layer, block), block));
  }
  const uint16_t* keys(int32_t layer, BlockId block) const {
    return const_cast<PagedKvCache*>(this)->keys(layer, block);
  }
  const uint16_t* values(int32_t layer, BlockId block) const {
    return const_cast<PagedKvCache*>(this)->values(layer, block);
  }

 private:
  PagedKvCache(const KvCacheShape& shape, HugePageBlock private_storage,
               std::unique_ptr<SharedMemoryRegion> shared_storage);
  int32_t Checked(int32_t layer, BlockId block) const;
  uint16_t* at(size_t offset) { return reinterpret_cast<uint16_t*>(base_ + offset); }

  KvCacheLayout layout_;
  HugePageBlock private_storage_;  // Read through every step.
  std::unique_ptr<SharedMemoryRegion> shared_storage_;
  uint8_t* base_;
};

}  // namespace tessera::kvcache

#endif  // TESSERA_KVCACHE_PAGED_KV_CACHE_H_
