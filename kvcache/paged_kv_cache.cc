#include "kvcache/paged_kv_cache.h"

#include <new>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace tessera::kvcache {

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(const KvCacheShape& shape) {
  auto positive = [](const char* field, int64_t value) -> absl::Status {
    if (value > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache ", field, " must be positive, got ", value));
  };
  for (absl::Status s :
       {positive("num_layers", shape.num_layers), positive("num_kv_heads", shape.num_kv_heads),
        positive("head_dim", shape.head_dim), positive("block_size", shape.block_size),
        positive("num_blocks", shape.num_blocks)}) {
    if (!s.ok()) return s;
  }
  try {
    return std::unique_ptr<PagedKvCache>(new PagedKvCache(shape));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", shape.num_blocks, " KV blocks of ", shape.bytes_per_block(), " bytes"));
  }
}

PagedKvCache::PagedKvCache(const KvCacheShape& shape)
    : shape_(shape),
      keys_(static_cast<size_t>(shape.block_elements()) * shape.num_blocks * shape.num_layers),
      values_(keys_.size()) {}

uint16_t* PagedKvCache::slot(std::vector<uint16_t>& pool, int32_t layer, BlockId block) {
  TESSERA_DCHECK(layer >= 0 && layer < shape_.num_layers);
  TESSERA_DCHECK(block >= 0 && block < shape_.num_blocks);
  size_t index = (static_cast<size_t>(layer) * shape_.num_blocks + block) * shape_.block_elements();
  return pool.data() + index;
}

}  // namespace tessera::kvcache
