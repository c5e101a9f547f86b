// The bf16 matmul with VDPBF16PS (AVX512_BF16). Its own file, compiled with that extension's
// flag, because only CPUs whose CPUID reports it may run it: the AVX-512 path calls it only
// after GetCpuFeatures().avx512_bf16, and uses the AVX2 kernel otherwise.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/internal/kernel_table.h"

namespace tessera::kernels::internal {
namespace {

// kTokens tokens share each 64-byte weight vector (16 rows, one pair of elements each); per
// token one broadcast pair of activations. VDPBF16PS adds each pair's two exact products to
// the row's fp32 sum.
template <int kTokens>
void Bf16Tokens(const PackedMatrix& w, const QuantizedActivations& x, int64_t g, int64_t t0,
                float* out, int64_t ld_out) {
  __m512 acc[kTokens];
  const uint16_t* a[kTokens];
  for (int t = 0; t < kTokens; ++t) {
    acc[t] = _mm512_setzero_ps();
    a[t] = x.bf16_row(t0 + t);
  }
  for (int64_t b = 0; b < w.blocks_per_row(); ++b) {
    const uint8_t* tile = w.tile(g, b);
    for (int p = 0; p < kQuantBlock / 2; ++p) {
      const __m512i weights = _mm512_load_si512(tile + p * 64);
      for (int t = 0; t < kTokens; ++t) {
        int32_t pair;
        std::memcpy(&pair, a[t] + b * kQuantBlock + 2 * p, 4);
        acc[t] = _mm512_dpbf16_ps(acc[t], reinterpret_cast<__m512bh>(weights),
                                  reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair)));
      }
    }
  }
  const int64_t lanes = std::min<int64_t>(kRowGroup, w.rows() - g * kRowGroup);
  const __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1);
  for (int t = 0; t < kTokens; ++t) {
    _mm512_mask_storeu_ps(out + (t0 + t) * ld_out + g * kRowGroup, mask, acc[t]);
  }
}

}  // namespace

void MatmulBf16Avx512Bf16(const PackedMatrix& w, const QuantizedActivations& x,
                          int64_t group_begin, int64_t group_end, float* out, int64_t ld_out) {
  constexpr int kTokenTile = 8;
  for (int64_t g = group_begin; g < group_end; ++g) {
    int64_t t = 0;
    for (; t + kTokenTile <= x.tokens(); t += kTokenTile) {
      Bf16Tokens<kTokenTile>(w, x, g, t, out, ld_out);
    }
    for (; t < x.tokens(); ++t) Bf16Tokens<1>(w, x, g, t, out, ld_out);
  }
}

}  // namespace tessera::kernels::internal
