#include "kvcache/block_store.h"

namespace tessera::kvcache {

bool BlockStore::Put(uint64_t hash, std::string kv) {
  const int64_t size = static_cast<int64_t>(kv.size());
  if (size > capacity_bytes_) return false;
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(hash);
  if (it != entries_.end()) {
    lru_.splice(lru_.end(), lru_, it->second.lru);
    return true;  // Same hash, same content.
  }
  while (bytes_ + size > capacity_bytes_ && !lru_.empty()) {
    auto victim = entries_.find(lru_.front());
    bytes_ -= static_cast<int64_t>(victim->second.kv.size());
    entries_.erase(victim);
    lru_.pop_front();
    ++evicted_;
  }
  lru_.push_back(hash);
  entries_.emplace(hash, Entry{std::move(kv), std::prev(lru_.end())});
  bytes_ += size;
  return true;
}

std::optional<std::string> BlockStore::Get(uint64_t hash) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(hash);
  if (it == entries_.end()) return std::nullopt;
  lru_.splice(lru_.end(), lru_, it->second.lru);
  return it->second.kv;
}

int64_t BlockStore::blocks() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(entries_.size());
}

int64_t BlockStore::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

int64_t BlockStore::evicted() const {
  absl::MutexLock lock(&mu_);
  return evicted_;
}

}  // namespace tessera::kvcache
