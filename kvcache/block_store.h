// A cache server's store: KV blocks by content hash in host memory, within a byte budget,
// evicting the least recently used.
// Thread-safety: thread-safe.
#ifndef TESSERA_KVCACHE_BLOCK_STORE_H_
#define TESSERA_KVCACHE_BLOCK_STORE_H_

#include <cstdint>
#include <list>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace tessera::kvcache {

class BlockStore {
 public:
  explicit BlockStore(int64_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}

  // Stores (or refreshes) a block; false if it alone exceeds the capacity.
  bool Put(uint64_t hash, std::string kv);
  // The block's bytes, marking it recently used.
  std::optional<std::string> Get(uint64_t hash);

  int64_t blocks() const;
  int64_t bytes() const;
  int64_t capacity_bytes() const { return capacity_bytes_; }
  int64_t evicted() const;

 private:
  struct Entry {
    std::string kv;
    std::list<uint64_t>::iterator lru;
  };
  const int64_t capacity_bytes_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::list<uint64_t> lru_ ABSL_GUARDED_BY(mu_);  // Least recently used first.
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evicted_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tessera::kvcache

#endif  // TESSERA_KVCACHE_BLOCK_STORE_H_
