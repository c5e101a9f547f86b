#include "kvcache/block_allocator.h"

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace tessera::kvcache {

BlockAllocator::BlockAllocator(int32_t num_blocks) : in_use_(num_blocks, false) {
  TESSERA_CHECK(num_blocks >= 0);
  free_list_.reserve(num_blocks);
  // Hand out low ids first, which keeps a lightly used pool compact in memory.
  for (BlockId id = num_blocks - 1; id >= 0; --id) free_list_.push_back(id);
}

absl::StatusOr<std::vector<BlockId>> BlockAllocator::Allocate(int32_t count) {
  TESSERA_CHECK(count >= 0);
  if (count > num_free()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("need ", count, " KV blocks, ", num_free(), " of ", num_blocks(), " free"));
  }
  std::vector<BlockId> blocks(free_list_.end() - count, free_list_.end());
  free_list_.resize(free_list_.size() - count);
  for (BlockId id : blocks) in_use_[id] = true;
  return blocks;
}

void BlockAllocator::Free(std::span<const BlockId> blocks) {
  for (BlockId id : blocks) {
    TESSERA_CHECK(id >= 0 && id < num_blocks() && in_use_[id]);
    in_use_[id] = false;
    free_list_.push_back(id);
  }
}

}  // namespace tessera::kvcache
