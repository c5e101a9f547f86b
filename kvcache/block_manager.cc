#include "kvcache/block_manager.h"

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace tessera::kvcache {

BlockManager::BlockManager(const BlockManagerOptions& options, KvBlockMover* mover)
    : options_(options), mover_(mover), device_(options.device_blocks), host_(options.host_blocks) {
  TESSERA_CHECK(options.device_blocks >= 0 && options.host_blocks >= 0);
  TESSERA_CHECK(mover != nullptr || options.host_blocks == 0);
  // Low ids first, which keeps a lightly used cache compact in memory.
  for (BlockId id = options.device_blocks - 1; id >= 0; --id) free_device_.push_back(id);
  for (BlockId id = options.host_blocks - 1; id >= 0; --id) free_host_.push_back(id);
}

std::optional<BlockId> BlockManager::TakeFreeDevice() {
  if (!free_device_.empty()) {
    BlockId block = free_device_.back();
    free_device_.pop_back();
    return block;
  }
  if (device_lru_.empty()) return std::nullopt;
  BlockId victim = device_lru_.front();
  EvictDevice(victim);
  return victim;
}

std::optional<BlockId> BlockManager::TakeHostBlock() {
  if (!free_host_.empty()) {
    BlockId block = free_host_.back();
    free_host_.pop_back();
    return block;
  }
  if (host_lru_.empty()) return std::nullopt;
  BlockId victim = host_lru_.front();
  host_lru_.pop_front();
  HostBlock& h = host_[victim];
  auto it = index_.find(*h.hash);
  it->second.host = -1;
  if (it->second.device < 0) {
    NoteChange(it->first, true);
    index_.erase(it);
  }
  h.hash.reset();
  ++stats_.evicted_host;
  return victim;
}

// Takes a cached device block out of the cache; its content survives on the host if there
// is room. The block id is then the caller's to reuse.
void BlockManager::EvictDevice(BlockId block) {
  DeviceBlock& d = device_[block];
  TESSERA_CHECK(d.references == 0 && d.hash.has_value());
  device_lru_.erase(d.lru);
  ++stats_.evicted_device;
  auto it = index_.find(*d.hash);
  TESSERA_CHECK(it != index_.end() && it->second.device == block);
  it->second.device = -1;
  if (it->second.host >= 0) {
    // Already on the host: refresh its recency.
    HostBlock& h = host_[it->second.host];
    host_lru_.splice(host_lru_.end(), host_lru_, h.lru);
  } else if (std::optional<BlockId> host = TakeHostBlock(); host.has_value()) {
    mover_->DeviceToHost(block, *host);
    HostBlock& h = host_[*host];
    h.hash = d.hash;
    h.lru = host_lru_.insert(host_lru_.end(), *host);
    it->second.host = *host;
    ++stats_.offloaded;
  } else {
    NoteChange(it->first, true);
    index_.erase(it);
  }
  d.hash.reset();
}

void BlockManager::Reference(BlockId block) {
  DeviceBlock& d = device_[block];
  if (d.references == 0) {
    if (d.hash.has_value()) device_lru_.erase(d.lru);
    ++referenced_;
  }
  ++d.references;
}

absl::StatusOr<BlockId> BlockManager::Allocate() {
  std::optional<BlockId> block = TakeFreeDevice();
  if (!block.has_value()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "all ", device_blocks(), " device KV blocks are referenced by running sequences"));
  }
  Reference(*block);
  return *block;
}

void BlockManager::AddReference(BlockId block) {
  TESSERA_CHECK(block >= 0 && block < device_blocks() && device_[block].references > 0);
  Reference(block);
}

void BlockManager::Release(BlockId block) {
  TESSERA_CHECK(block >= 0 && block < device_blocks());
  DeviceBlock& d = device_[block];
  TESSERA_CHECK(d.references > 0);
  if (--d.references > 0) return;
  --referenced_;
  if (d.hash.has_value()) {
    d.lru = device_lru_.insert(device_lru_.end(), block);
  } else {
    free_device_.push_back(block);
  }
}

void BlockManager::Release(std::span<const BlockId> blocks) {
  for (BlockId block : blocks) Release(block);
}

std::vector<BlockId> BlockManager::AcquirePrefix(std::span<const BlockHash> hashes) {
  std::vector<BlockId> blocks;
  if (!options_.prefix_caching) return blocks;
  for (BlockHash hash : hashes) {
    ++stats_.lookups;
    auto it = index_.find(hash);
    if (it == index_.end()) break;
    if (it->second.device >= 0) {
      Reference(it->second.device);
      blocks.push_back(it->second.device);
      ++stats_.device_hits;
      continue;
    }
    const BlockId host = it->second.host;
    // Restore: a device block for the content, which may evict another cached block (never
    // one of `blocks`: those are referenced now).
    std::optional<BlockId> device = TakeFreeDevice();
    if (!device.has_value()) break;
    it = index_.find(hash);  // Eviction may have changed the index.
    if (it == index_.end() || it->second.host != host) {
      free_device_.push_back(*device);
      break;
    }
    mover_->HostToDevice(host, *device);
    Reference(*device);  // Before it has a hash: it was never in the device LRU list.
    device_[*device].hash = hash;
    it->second.device = *device;
    host_lru_.splice(host_lru_.end(), host_lru_, host_[host].lru);
    blocks.push_back(*device);
    ++stats_.host_hits;
    ++stats_.restored;
  }
  return blocks;
}

void BlockManager::Publish(BlockId block, BlockHash hash) {
  if (!options_.prefix_caching) return;
  DeviceBlock& d = device_[block];
  TESSERA_CHECK(d.references > 0);
  if (d.hash.has_value()) return;
  auto [entry, inserted] = index_.try_emplace(hash);
  if (inserted) NoteChange(hash, false);
  Location& location = entry->second;
  if (location.device >= 0) return;  // Someone else's block already holds it.
  location.device = block;
  d.hash = hash;
}

BlockManager::Changes BlockManager::TakeChanges() {
  Changes changes;
  for (const auto& [hash, held_before] : changed_) {
    const bool held_now = index_.contains(hash);
    if (held_now && !held_before) changes.stored.push_back(hash);
    if (!held_now && held_before) changes.removed.push_back(hash);
  }
  changed_.clear();
  return changes;
}

std::optional<BlockId> BlockManager::DeviceBlockOf(BlockHash hash) const {
  auto it = index_.find(hash);
  if (it == index_.end() || it->second.device < 0) return std::nullopt;
  return it->second.device;
}

int32_t BlockManager::LeadingHeld(std::span<const BlockHash> hashes) const {
  int32_t n = 0;
  while (n < static_cast<int32_t>(hashes.size()) && index_.contains(hashes[n])) ++n;
  return n;
}

std::vector<BlockHash> BlockManager::HeldHashes() const {
  std::vector<BlockHash> hashes;
  hashes.reserve(index_.size());
  for (const auto& [hash, location] : index_) hashes.push_back(hash);
  return hashes;
}

absl::StatusOr<std::vector<BlockId>> BlockManager::SwapOut(std::span<const BlockId> device_blocks) {
  const int32_t available = static_cast<int32_t>(free_host_.size() + host_lru_.size());
  if (available < static_cast<int32_t>(device_blocks.size())) {
    return absl::ResourceExhaustedError(absl::StrCat("the host tier has room for ", available,
                                                     " of ", device_blocks.size(), " blocks"));
  }
  std::vector<BlockId> host_blocks;
  for (BlockId device : device_blocks) {
    BlockId host = *TakeHostBlock();
    mover_->DeviceToHost(device, host);
    host_blocks.push_back(host);
  }
  for (BlockId device : device_blocks) Release(device);
  swapped_host_ += static_cast<int32_t>(host_blocks.size());
  stats_.swapped_out += static_cast<int64_t>(host_blocks.size());
  return host_blocks;
}

absl::StatusOr<std::vector<BlockId>> BlockManager::SwapIn(std::span<const BlockId> host_blocks) {
  if (unreferenced() < static_cast<int32_t>(host_blocks.size())) {
    return absl::ResourceExhaustedError(absl::StrCat("the device tier has room for ",
                                                     unreferenced(), " of ", host_blocks.size(),
                                                     " blocks"));
  }
  std::vector<BlockId> device_blocks;
  for (BlockId host : host_blocks) {
    BlockId device = *Allocate();
    mover_->HostToDevice(host, device);
    device_blocks.push_back(device);
  }
  FreeSwapped(host_blocks);
  stats_.swapped_in += static_cast<int64_t>(host_blocks.size());
  return device_blocks;
}

void BlockManager::FreeSwapped(std::span<const BlockId> host_blocks) {
  for (BlockId host : host_blocks) free_host_.push_back(host);
  swapped_host_ -= static_cast<int32_t>(host_blocks.size());
}

bool BlockManager::IsShared(BlockId block) const {
  const DeviceBlock& d = device_[block];
  return d.references > 1 || d.hash.has_value();
}

absl::StatusOr<BlockId> BlockManager::MakeExclusive(BlockId block) {
  if (!IsShared(block)) return block;
  absl::StatusOr<BlockId> copy = Allocate();
  if (!copy.ok()) return copy.status();
  mover_->DeviceToDevice(block, *copy);
  Release(block);
  ++stats_.copied_on_write;
  return *copy;
}

}  // namespace tessera::kvcache
