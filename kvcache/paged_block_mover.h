// Moves whole KV blocks (every layer, keys and values) between a device-tier PagedKvCache and
// a host-tier one of the same shape, and within the device tier (copy on write). On the CPU
// backend both tiers are host memory; with CUDA the device side becomes device memory.
// Thread-compatible: used by the step loop that owns both caches.
#ifndef TESSERA_KVCACHE_PAGED_BLOCK_MOVER_H_
#define TESSERA_KVCACHE_PAGED_BLOCK_MOVER_H_

#include <atomic>
#include <cstdint>
#include <cstring>

#include "kvcache/block_manager.h"
#include "kvcache/paged_kv_cache.h"

namespace tessera::kvcache {

class PagedBlockMover final : public KvBlockMover {
 public:
  // `host` may be null when there is no host tier.
  PagedBlockMover(PagedKvCache& device, PagedKvCache* host) : device_(device), host_(host) {}

  void DeviceToHost(BlockId device, BlockId host) override { Copy(device_, device, *host_, host); }
  void HostToDevice(BlockId host, BlockId device) override { Copy(*host_, host, device_, device); }
  void DeviceToDevice(BlockId from, BlockId to) override { Copy(device_, from, device_, to); }

  int64_t bytes_moved() const { return bytes_moved_; }

 private:
  void Copy(PagedKvCache& from, BlockId a, PagedKvCache& to, BlockId b) {
    const size_t bytes = from.layout().block_bytes();
    for (int32_t layer = 0; layer < from.shape().num_layers; ++layer) {
      std::memcpy(to.keys(layer, b), from.keys(layer, a), bytes);
      std::memcpy(to.values(layer, b), from.values(layer, a), bytes);
    }
    bytes_moved_ += static_cast<int64_t>(2 * bytes) * from.shape().num_layers;
  }

  PagedKvCache& device_;
  PagedKvCache* host_;
  int64_t bytes_moved_ = 0;
};

}  // namespace tessera::kvcache

#endif  // TESSERA_KVCACHE_PAGED_BLOCK_MOVER_H_
