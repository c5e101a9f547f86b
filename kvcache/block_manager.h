// Fixed-size KV blocks over two tiers, shared by reference count and reused by content.
//
// The device tier is the memory kernels compute on (a budgeted arena here; device memory with
// CUDA); its block ids index the PagedKvCache. The host tier is plain host memory. A device
// block is free, referenced by running sequences, or cached: unreferenced but holding
// published content (a full block with a content hash) that a later request with the same
// prefix can take instead of recomputing it. Cached blocks are evicted least recently used
// first; an evicted device block moves to the host tier when it has room (evicting the host's
// least recently used block if need be) and comes back when a request needs it.
//
// Published blocks are immutable: a sequence that must write into a block others can see gets
// its own copy first (MakeExclusive).
//
// Content moves between tiers through a KvBlockMover, so the manager is pure bookkeeping and
// testable without a model.
// Thread-compatible: owned by one step loop.
#ifndef TESSERA_KVCACHE_BLOCK_MANAGER_H_
#define TESSERA_KVCACHE_BLOCK_MANAGER_H_

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "kvcache/block_allocator.h"
#include "kvcache/block_hash.h"

namespace tessera::kvcache {

// Copies whole blocks (every layer, keys and values) between and within tiers.
class KvBlockMover {
 public:
  virtual ~KvBlockMover() = default;
  virtual void DeviceToHost(BlockId device, BlockId host) = 0;
  virtual void HostToDevice(BlockId host, BlockId device) = 0;
  virtual void DeviceToDevice(BlockId from, BlockId to) = 0;
};

struct BlockManagerOptions {
  int32_t device_blocks = 0;
  int32_t host_blocks = 0;  // 0: no host tier; evicted blocks are dropped.
  bool prefix_caching = true;
};

struct BlockManagerStats {
  int64_t lookups = 0;          // Blocks looked up in the prefix cache.
  int64_t device_hits = 0;      // Found cached on the device tier.
  int64_t host_hits = 0;        // Found on the host tier (and restored).
  int64_t offloaded = 0;        // Device blocks moved to the host tier on eviction.
  int64_t restored = 0;         // Host blocks copied back to the device tier.
  int64_t evicted_device = 0;   // Cached device blocks evicted (offloaded or dropped).
  int64_t evicted_host = 0;     // Cached host blocks dropped.
  int64_t copied_on_write = 0;  // Shared blocks copied before a write.
  int64_t swapped_out = 0;      // Blocks of preempted sequences moved to the host tier.
  int64_t swapped_in = 0;
};

class BlockManager {
 public:
  // `mover` may be null only if the host tier is empty and MakeExclusive is never needed.
  BlockManager(const BlockManagerOptions& options, KvBlockMover* mover);

  BlockManager(const BlockManager&) = delete;
  BlockManager& operator=(const BlockManager&) = delete;

  // A fresh device block with one reference. Takes a free block, else evicts the least
  // recently used cached one. ResourceExhausted when every device block is referenced.
  absl::StatusOr<BlockId> Allocate();
  // Drops one reference. At zero the block is cached if it holds published content, free
  // otherwise.
  void Release(BlockId block);
  void Release(std::span<const BlockId> blocks);
  // Adds one reference to a block the caller already references.
  void AddReference(BlockId block);

  // Takes a reference on the blocks holding the longest cached run of `hashes` (a prefix's
  // chained block hashes, in order), restoring host-tier blocks to the device. Stops at the
  // first block that is not cached (or cannot be restored for lack of device room).
  std::vector<BlockId> AcquirePrefix(std::span<const BlockHash> hashes);
  // Records that the full device block `block` holds the content `hash`, so later requests
  // can share it. If another block already holds that content, nothing changes.
  void Publish(BlockId block, BlockHash hash);

  // Preemption by swapping: copies the blocks to host-tier blocks reserved for the caller
  // (evicting cached host content if need be) and drops the caller's device references.
  // ResourceExhausted, changing nothing, if the host tier cannot take them all.
  absl::StatusOr<std::vector<BlockId>> SwapOut(std::span<const BlockId> device_blocks);
  // Brings swapped blocks back into fresh device blocks and frees the host ones.
  // ResourceExhausted, changing nothing, if the device tier cannot take them all.
  absl::StatusOr<std::vector<BlockId>> SwapIn(std::span<const BlockId> host_blocks);
  // Frees swapped host blocks without bringing them back (the sequence ended).
  void FreeSwapped(std::span<const BlockId> host_blocks);
  int32_t swapped_host() const { return swapped_host_; }

  // Whether others can see the block's content (more than one reference, or published).
  bool IsShared(BlockId block) const;
  // A block the caller may write: `block` itself if not shared, else a fresh copy (the
  // caller's reference moves from the original to the copy). ResourceExhausted if no device
  // block can be had for the copy.
  absl::StatusOr<BlockId> MakeExclusive(BlockId block);

  int32_t device_blocks() const { return static_cast<int32_t>(device_.size()); }
  int32_t host_blocks() const { return static_cast<int32_t>(host_.size()); }
  // Device blocks no sequence references (free or cached).
  int32_t unreferenced() const { return device_blocks() - referenced_; }
  int32_t referenced() const { return referenced_; }
  int32_t cached_device() const { return static_cast<int32_t>(device_lru_.size()); }
  int32_t cached_host() const { return static_cast<int32_t>(host_lru_.size()); }
  int32_t references(BlockId block) const { return device_[block].references; }

  // What the manager holds changed: content hashes that became reusable here (on either
  // tier) and ones that are gone, since the last call. Net of each other within the interval,
  // so applying them to a view that was exact at the last call makes it exact again.
  struct Changes {
    std::vector<BlockHash> stored;
    std::vector<BlockHash> removed;
  };
  Changes TakeChanges();
  // Every content hash held now, on either tier (a snapshot for a view that lost track).
  std::vector<BlockHash> HeldHashes() const;
  int32_t held_hashes() const { return static_cast<int32_t>(index_.size()); }
  // The device block holding `hash`, if any.
  std::optional<BlockId> DeviceBlockOf(BlockHash hash) const;
  // How many of `hashes` are held from the start, on either tier.
  int32_t LeadingHeld(std::span<const BlockHash> hashes) const;
  const BlockManagerStats& stats() const { return stats_; }
  bool prefix_caching() const { return options_.prefix_caching; }

 private:
  struct DeviceBlock {
    int32_t references = 0;
    std::optional<BlockHash> hash;              // Published content.
    std::list<BlockId>::iterator lru;           // Valid while cached.
  };
  struct HostBlock {
    std::optional<BlockHash> hash;
    std::list<BlockId>::iterator lru;
  };
  struct Location {
    BlockId device = -1;
    BlockId host = -1;
  };

  std::optional<BlockId> TakeFreeDevice();
  void EvictDevice(BlockId block);
  std::optional<BlockId> TakeHostBlock();
  void Reference(BlockId block);

  BlockManagerOptions options_;
  KvBlockMover* mover_;
  std::vector<DeviceBlock> device_;
  std::vector<HostBlock> host_;
  std::vector<BlockId> free_device_;
  std::vector<BlockId> free_host_;
  std::list<BlockId> device_lru_;  // Cached device blocks, least recently used first.
  std::list<BlockId> host_lru_;    // Cached host blocks, least recently used first.
  absl::flat_hash_map<BlockHash, Location> index_;
  // Per hash changed since TakeChanges(): whether it was held before the first change.
  absl::flat_hash_map<BlockHash, bool> changed_;
  void NoteChange(BlockHash hash, bool held_before) { changed_.try_emplace(hash, held_before); }
  int32_t referenced_ = 0;
  int32_t swapped_host_ = 0;  // Host blocks holding swapped-out sequences (not cache).
  BlockManagerStats stats_;
};

}  // namespace tessera::kvcache

#endif  // TESSERA_KVCACHE_BLOCK_MANAGER_H_
