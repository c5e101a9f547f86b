#include "kvcache/paged_kv_cache.h"

#include <new>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "kvcache/shared_memory.h"

namespace tessera::kvcache {

absl::Status ValidateKvCacheShape(const KvCacheShape& shape) {
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
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(const KvCacheShape& shape,
                                                                   bool shared) {
  TESSERA_RETURN_IF_ERROR(ValidateKvCacheShape(shape));
  const size_t bytes = KvCacheLayout{shape}.total_bytes();
  if (shared) {
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<SharedMemoryRegion> region,
                             SharedMemoryRegion::Create("kv", bytes));
    return std::unique_ptr<PagedKvCache>(new PagedKvCache(shape, nullptr, std::move(region)));
  }
  HugePageBlock storage = AllocateHugePageBlock(bytes);  // Zero-filled.
  if (storage == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", shape.num_blocks, " KV blocks of ", shape.bytes_per_block(), " bytes"));
  }
  return std::unique_ptr<PagedKvCache>(new PagedKvCache(shape, std::move(storage), nullptr));
}

PagedKvCache::PagedKvCache(const KvCacheShape& shape, HugePageBlock private_storage,
                           std::unique_ptr<SharedMemoryRegion> shared_storage)
    : layout_{shape},
      private_storage_(std::move(private_storage)),
      shared_storage_(std::move(shared_storage)),
      base_(shared_storage_ ? shared_storage_->data() : private_storage_.get()) {}

PagedKvCache::~PagedKvCache() = default;

std::string PagedKvCache::shared_memory_name() const {
  return shared_storage_ ? shared_storage_->name() : std::string();
}

int32_t PagedKvCache::Checked(int32_t layer, BlockId block) const {
  TESSERA_DCHECK(layer >= 0 && layer < layout_.shape.num_layers);
  TESSERA_DCHECK(block >= 0 && block < layout_.shape.num_blocks);
  return layer;
}

}  // namespace tessera::kvcache
