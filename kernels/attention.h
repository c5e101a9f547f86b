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

// For query row `query` at absolute position `pos` and head `head`: attends to positions
// [0, pos] and writes head_dim outputs to out. `q` and `out` point at that head's slice.
// `scores` must hold pos + 1 floats.
void AttendOneHead(const AttentionShape& shape, const PagedKv& kv, const float* q, int64_t pos,
                   int32_t head, float* scores, float* out, Isa isa = DefaultIsa());

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_ATTENTION_H_
