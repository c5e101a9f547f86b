#include "kernels/matmul_f32.h"

#include <algorithm>

namespace tessera::kernels {
namespace {

// Eight independent partial sums: the compiler keeps them in vector lanes, and the order of
// additions is fixed (results do not depend on the thread count).
float Dot(const float* a, const float* b, int64_t n) {
  float partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    for (int j = 0; j < 8; ++j) partial[j] += a[k + j] * b[k + j];
  }
  float sum = 0.0f;
  for (; k < n; ++k) sum += a[k] * b[k];
  for (float p : partial) sum += p;
  return sum;
}

}  // namespace

void MatmulF32(const float* w, int64_t rows, int64_t cols, const float* x, int64_t tokens,
               float* out, int64_t ld_out, ThreadPool& pool) {
  // Rows in chunks so each thread streams its own part of the weights once per token tile.
  constexpr int64_t kTokenTile = 8;
  pool.ParallelFor(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t0 = 0; t0 < tokens; t0 += kTokenTile) {
      const int64_t t1 = std::min(tokens, t0 + kTokenTile);
      for (int64_t r = begin; r < end; ++r) {
        const float* row = w + r * cols;
        for (int64_t t = t0; t < t1; ++t) out[t * ld_out + r] = Dot(row, x + t * cols, cols);
      }
    }
  });
}

}  // namespace tessera::kernels
