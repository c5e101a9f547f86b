// Content hashes of full KV blocks for prefix caching. A block's hash covers its tokens and,
// through the parent hash, every token before them, so equal hashes mean equal KV (same model,
// same positions). The chain starts from a seed that identifies the model, so two models never
// share blocks. xxHash64 (libxxhash): fast, well distributed, 64 bits.
// Thread-safety: pure functions.
#ifndef TESSERA_KVCACHE_BLOCK_HASH_H_
#define TESSERA_KVCACHE_BLOCK_HASH_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/strings/string_view.h"

namespace tessera::kvcache {

using BlockHash = uint64_t;

// The chain's seed for a model (e.g. its file name and size).
BlockHash ModelHashSeed(absl::string_view model_id);

// The hash of a block holding `tokens`, after blocks whose chain ended in `parent`.
BlockHash ChainBlockHash(BlockHash parent, std::span<const int32_t> tokens);

// Hashes of the first `max_blocks` full blocks of `tokens` (fewer if there are fewer).
std::vector<BlockHash> PrefixBlockHashes(std::span<const int32_t> tokens, int32_t block_size,
                                         BlockHash seed, int32_t max_blocks);

}  // namespace tessera::kvcache

#endif  // TESSERA_KVCACHE_BLOCK_HASH_H_
