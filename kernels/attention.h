// Causal grouped-query attention of one sequence's new tokens over its paged fp16 KV cache.
// The caller resolves the sequence's block table into per-block key and value pointers for
// the layer, so this kernel knows nothing of allocators or tiers.
// Thread-safe: reads shared inputs, writes only `out` rows of the heads it is given.
#ifndef TESSERA_KERNELS_ATTENTION_H_
#define TESSERA_KERNELS_ATTENTION_H_

#include <cstdint>
#include <vector>

#include "kernels/cpu_features.h"

namespace tessera::kernels {

inline constexpr int32_t kMaxHeadDim = 512;

struct AttentionShape {
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 0;  // Positions per KV block.
  float scale = 0.0f;      // Usually 1 / sqrt(head_dim).
};

struct PagedKv {
  // Per block of the sequence: block_size rows of num_kv_heads * head_dim fp16 values.
  const uint16_t* const* key_blocks = nullptr;
  const uint16_t* const* value_blocks = nullptr;
};

// Attention for `tokens` consecutive new tokens of one sequence, at positions first_pos,
// first_pos + 1, ..., for the query heads that share kv head `kv_head`. Token t's queries (all
// heads, head-major) are at q + t * q_stride; its outputs go to the same heads' slices of
// out + t * out_stride. The KV of positions [0, first_pos + tokens) must be in the cache.
// This is the fast path: each KV block is read once for the whole tile.
void AttendTile(const AttentionShape& shape, const PagedKv& kv, const float* q, int64_t q_stride,
                int64_t first_pos, int tokens, int32_t kv_head, float* out, int64_t out_stride,
                Isa isa = DefaultIsa());

// The reference: one query row at position `pos` for head `head`, with materialized scores
// (`scores` holds pos + 1 floats). `q` and `out` point at that head's slice.
void AttendOneHead(const AttentionShape& shape, const PagedKv& kv, const float* q, int64_t pos,
                   int32_t head, float* scores, float* out, Isa isa = DefaultIsa());

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_ATTENTION_H_
