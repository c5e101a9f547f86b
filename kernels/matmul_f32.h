// Matrix products with fp32 weights, for checkpoints that come unquantized (Hugging Face
// safetensors in F32/BF16/F16, converted to fp32 at load), split over a thread pool by rows.
// Thread-safety: as the pool's; the inputs are read-only.
#ifndef TESSERA_KERNELS_MATMUL_F32_H_
#define TESSERA_KERNELS_MATMUL_F32_H_

#include <cstdint>

#include "kernels/thread_pool.h"

namespace tessera::kernels {

// out[t * ld_out + r] = sum_k w[r * cols + k] * x[t * cols + k] for t < tokens, r < rows.
void MatmulF32(const float* w, int64_t rows, int64_t cols, const float* x, int64_t tokens,
               float* out, int64_t ld_out, ThreadPool& pool);

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_MATMUL_F32_H_
