#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/check.h"
#include "kernels/fp16.h"
#include "kernels/internal/kernel_table.h"

namespace tessera::kernels {

void AttendTile(const AttentionShape& shape, const PagedKv& kv, const float* q, int64_t q_stride,
                int64_t first_pos, int tokens, int32_t kv_head, float* out, int64_t out_stride,
                Isa isa) {
  TESSERA_DCHECK(shape.head_dim <= kMaxHeadDim);
  internal::KernelsFor(isa).attend_tile(shape, kv, q, q_stride, first_pos, tokens, kv_head, out,
                                        out_stride);
}

void AttendOneHead(const AttentionShape& shape, const PagedKv& kv, const float* q, int64_t pos,
                   int32_t head, float* scores, float* out, Isa isa) {
  TESSERA_DCHECK(shape.head_dim <= kMaxHeadDim);
  const internal::KernelTable& k = internal::KernelsFor(isa);
  const int32_t kv_head = head / (shape.num_heads / shape.num_kv_heads);
  const int64_t kv_dim = int64_t{shape.num_kv_heads} * shape.head_dim;
  const int64_t head_offset = int64_t{kv_head} * shape.head_dim;
  // The query is rounded to fp16, the precision of the keys it meets, as in AttendTile.
  float q16[kMaxHeadDim];
  for (int32_t i = 0; i < shape.head_dim; ++i) q16[i] = RoundToFp16(q[i]);
  float max = -INFINITY;
  for (int64_t p = 0; p <= pos; ++p) {
    const uint16_t* key =
        kv.key_blocks[p / shape.block_size] + (p % shape.block_size) * kv_dim + head_offset;
    scores[p] = k.dot_f32_f16(q16, key, shape.head_dim) * shape.scale;
    max = std::max(max, scores[p]);
  }
  float sum = 0.0f;
  for (int64_t p = 0; p <= pos; ++p) {
    scores[p] = std::exp(scores[p] - max);
    sum += scores[p];
  }
  const float inv = 1.0f / sum;
  std::memset(out, 0, sizeof(float) * shape.head_dim);
  for (int64_t p = 0; p <= pos; ++p) {
    const uint16_t* value =
        kv.value_blocks[p / shape.block_size] + (p % shape.block_size) * kv_dim + head_offset;
    k.axpy_f16(scores[p] * inv, value, out, shape.head_dim);
  }
}

}  // namespace tessera::kernels
