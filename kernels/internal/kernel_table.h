// The per-ISA entry points of the compute kernels. Each ISA's functions live in their own
// translation unit, compiled with that ISA's flags; kernels/*.cc pick one through
// KernelsFor(). Internal to kernels/.
#ifndef TESSERA_KERNELS_INTERNAL_KERNEL_TABLE_H_
#define TESSERA_KERNELS_INTERNAL_KERNEL_TABLE_H_

#include <cstdint>

#include "kernels/attention.h"
#include "kernels/cpu_features.h"
#include "kernels/packed_matrix.h"
#include "kernels/quantized_activations.h"

namespace tessera::kernels::internal {

struct KernelTable {
  // out[t * ld_out + r] for every token t of x and every row r of row groups
  // [group_begin, group_end) that is < w.rows().
  void (*matmul)(const PackedMatrix& w, const QuantizedActivations& x, int64_t group_begin,
                 int64_t group_end, float* out, int64_t ld_out);
  // Quantizes one row of `cols` floats into cols / 32 blocks.
  void (*quantize_row)(const float* x, int64_t cols, ActivationBlock* out);
  // sum_i a[i] * fp16(b[i]) over n elements.
  float (*dot_f32_f16)(const float* a, const uint16_t* b, int64_t n);
  // y[i] += alpha * fp16(x[i]) over n elements.
  void (*axpy_f16)(float alpha, const uint16_t* x, float* y, int64_t n);
  // out[i] = silu(gate[i]) * up[i] over n elements.
  void (*silu_mul)(const float* gate, const float* up, int64_t n, float* out);
  // See AttendTile() in kernels/attention.h.
  void (*attend_tile)(const AttentionShape& shape, const PagedKv& kv, const float* q,
                      int64_t q_stride, int64_t first_pos, int tokens, int32_t kv_head, float* out,
                      int64_t out_stride);
};

// Matmul of a PackedFormat::kBf16 matrix: with AVX2 and FMA (also the AVX-512 path's on CPUs
// without AVX512_BF16), and with VDPBF16PS (only where GetCpuFeatures().avx512_bf16).
void MatmulBf16Avx2(const PackedMatrix& w, const QuantizedActivations& x, int64_t group_begin,
                    int64_t group_end, float* out, int64_t ld_out);
void MatmulBf16Avx512Bf16(const PackedMatrix& w, const QuantizedActivations& x,
                          int64_t group_begin, int64_t group_end, float* out, int64_t ld_out);

const KernelTable& ScalarKernels();
const KernelTable& Avx2Kernels();
const KernelTable& Avx512Kernels();
const KernelTable& KernelsFor(Isa isa);

}  // namespace tessera::kernels::internal

#endif  // TESSERA_KERNELS_INTERNAL_KERNEL_TABLE_H_
