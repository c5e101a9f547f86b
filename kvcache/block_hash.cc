#include "kvcache/block_hash.h"

#include <xxhash.h>

#include <algorithm>

namespace tessera::kvcache {

BlockHash ModelHashSeed(absl::string_view model_id) {
  return XXH64(model_id.data(), model_id.size(), /*seed=*/0x7e55e7a);
}

BlockHash ChainBlockHash(BlockHash parent, std::span<const int32_t> tokens) {
  return XXH64(tokens.data(), tokens.size_bytes(), parent);
}

std::vector<BlockHash> PrefixBlockHashes(std::span<const int32_t> tokens, int32_t block_size,
                                         BlockHash seed, int32_t max_blocks) {
  const int32_t blocks =
      std::min(max_blocks, static_cast<int32_t>(tokens.size()) / std::max(block_size, 1));
  std::vector<BlockHash> hashes;
  hashes.reserve(std::max(blocks, 0));
  BlockHash parent = seed;
  for (int32_t b = 0; b < blocks; ++b) {
    parent = ChainBlockHash(parent, tokens.subspan(static_cast<size_t>(b) * block_size, block_size));
    hashes.push_back(parent);
  }
  return hashes;
}

}  // namespace tessera::kvcache
