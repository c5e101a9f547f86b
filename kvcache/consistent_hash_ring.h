// Which cache server owns a block: a consistent-hash ring over the live servers, with virtual
// nodes so load spreads evenly. When a server joins or leaves only the blocks on its arcs
// change owner; everything else stays where it is.
// Thread-compatible (immutable after construction).
#ifndef TESSERA_KVCACHE_CONSISTENT_HASH_RING_H_
#define TESSERA_KVCACHE_CONSISTENT_HASH_RING_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tessera::kvcache {

class ConsistentHashRing {
 public:
  explicit ConsistentHashRing(std::vector<std::string> nodes, int virtual_nodes = 64);

  // The node owning `key`; nullopt if the ring is empty.
  std::optional<std::string> Owner(uint64_t key) const;
  const std::vector<std::string>& nodes() const { return nodes_; }

 private:
  std::vector<std::string> nodes_;
  std::vector<std::pair<uint64_t, int>> points_;  // Sorted by position; node index.
};

}  // namespace tessera::kvcache

#endif  // TESSERA_KVCACHE_CONSISTENT_HASH_RING_H_
