// Hands out fixed-size KV block ids from a pool of a fixed number of blocks. Issue #4's block
// manager grows this into tiers, reference counts and prefix sharing; the model only ever sees
// block ids through a sequence's block table.
// Not thread-safe: owned by the step loop.
#ifndef TESSERA_KVCACHE_BLOCK_ALLOCATOR_H_
#define TESSERA_KVCACHE_BLOCK_ALLOCATOR_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::kvcache {

using BlockId = int32_t;

class BlockAllocator {
 public:
  explicit BlockAllocator(int32_t num_blocks);

  // Takes `count` free blocks, or returns ResourceExhausted and takes none.
  absl::StatusOr<std::vector<BlockId>> Allocate(int32_t count);
  // Returns blocks to the pool. Each must have come from Allocate() and not been freed since.
  void Free(std::span<const BlockId> blocks);

  int32_t num_blocks() const { return static_cast<int32_t>(in_use_.size()); }
  int32_t num_free() const { return static_cast<int32_t>(free_list_.size()); }

 private:
  std::vector<BlockId> free_list_;
  std::vector<bool> in_use_;
};

}  // namespace tessera::kvcache

#endif  // TESSERA_KVCACHE_BLOCK_ALLOCATOR_H_
