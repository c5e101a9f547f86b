// Matrix products of packed quantized weights with quantized activations, split over a
// thread pool by row groups (each thread streams its own contiguous part of the weights).
// Thread-safety: as the pool's; the inputs are read-only.
#ifndef TESSERA_KERNELS_MATMUL_H_
#define TESSERA_KERNELS_MATMUL_H_

#include <cstdint>

#include "kernels/cpu_features.h"
#include "kernels/packed_matrix.h"
#include "kernels/quantized_activations.h"
#include "kernels/thread_pool.h"

namespace tessera::kernels {

// out[t * ld_out + r] = sum_k w[r][k] * x[t][k] for every token t of x and row r < w.rows().
// Preconditions: x.cols() == w.cols(); ld_out >= w.rows().
void Matmul(const PackedMatrix& w, const QuantizedActivations& x, float* out, int64_t ld_out,
            ThreadPool& pool, Isa isa = DefaultIsa());

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_MATMUL_H_
