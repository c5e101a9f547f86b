#include "kvcache/consistent_hash_ring.h"

#include <xxhash.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tessera::kvcache {

ConsistentHashRing::ConsistentHashRing(std::vector<std::string> nodes, int virtual_nodes)
    : nodes_(std::move(nodes)) {
  std::sort(nodes_.begin(), nodes_.end());
  nodes_.erase(std::unique(nodes_.begin(), nodes_.end()), nodes_.end());
  for (int n = 0; n < static_cast<int>(nodes_.size()); ++n) {
    for (int v = 0; v < virtual_nodes; ++v) {
      std::string point = absl::StrCat(nodes_[n], "#", v);
      points_.emplace_back(XXH64(point.data(), point.size(), 0), n);
    }
  }
  std::sort(points_.begin(), points_.end());
}

std::optional<std::string> ConsistentHashRing::Owner(uint64_t key) const {
  if (points_.empty()) return std::nullopt;
  // Block hashes are already uniform; mix once more so ring positions and keys are unrelated.
  const uint64_t position = XXH64(&key, sizeof(key), 1);
  auto it = std::lower_bound(points_.begin(), points_.end(), std::make_pair(position, 0));
  if (it == points_.end()) it = points_.begin();
  return nodes_[it->second];
}

}  // namespace tessera::kvcache
