// AVX-512 kernels (F, BW, VL, DQ, VNNI, F16C). Compiled with those flags; only called after
// CPUID confirmed them. The matmul computes 16 rows per VPDPBUSD: each lane takes four
// unsigned weight quants of its row times the same four signed activation quants.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/internal/kernel_table.h"

namespace tessera::kernels::internal {
namespace {

inline __m512i Broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Accumulates one tile (16 rows x 32 columns) against T tokens' activation block b.
template <int T, bool kNibble>
inline void AccumulateTile(const uint8_t* tile, const ActivationBlock* const* a, int64_t b,
                           __m512* acc) {
  const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile)));
  const __m512 m =
      kNibble ? _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile + 32)))
              : _mm512_setzero_ps();
  const uint8_t* q = tile + 64;
  __m512i w[8];
  if constexpr (kNibble) {
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (int c = 0; c < 4; ++c) {
      __m512i v = _mm512_loadu_si512(q + 64 * c);
      w[c] = _mm512_and_si512(v, low);
      w[4 + c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
    }
  } else {
    for (int c = 0; c < 8; ++c) w[c] = _mm512_loadu_si512(q + 64 * c);
  }
  for (int t = 0; t < T; ++t) {
    const ActivationBlock& ab = a[t][b];
    __m512i i0 = _mm512_setzero_si512();
    __m512i i1 = _mm512_setzero_si512();
    // w[c] holds elements 4c..4c+3 of each row in both formats (for nibble tiles, c >= 4 are
    // the high nibbles, elements 16 + 4(c - 4)...), so it pairs with activations at 4c.
    for (int c = 0; c < 8; c += 2) {
      i0 = _mm512_dpbusd_epi32(i0, w[c], Broadcast4(ab.q + 4 * c));
      i1 = _mm512_dpbusd_epi32(i1, w[c + 1], Broadcast4(ab.q + 4 * (c + 1)));
    }
    __m512i sum = _mm512_add_epi32(i0, i1);
    if constexpr (kNibble) {
      __m512 dot = _mm512_cvtepi32_ps(sum);
      acc[t] = _mm512_fmadd_ps(dot, _mm512_mul_ps(d, _mm512_set1_ps(ab.d)), acc[t]);
      acc[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(ab.s), acc[t]);
    } else {
      // Byte quants are q + 128 with m = -128 d: remove the offset exactly, in integers.
      __m512 dot = _mm512_cvtepi32_ps(_mm512_sub_epi32(sum, _mm512_set1_epi32(128 * ab.sum)));
      acc[t] = _mm512_fmadd_ps(dot, _mm512_mul_ps(d, _mm512_set1_ps(ab.d)), acc[t]);
    }
  }
}

template <int T, bool kNibble>
void GroupTokens(const PackedMatrix& w, const QuantizedActivations& x, int64_t g, int64_t t0,
                 float* out, int64_t ld_out) {
  const ActivationBlock* a[T];
  for (int t = 0; t < T; ++t) a[t] = x.row(t0 + t);
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  const int64_t blocks = w.blocks_per_row();
  const uint8_t* tile = w.tile(g, 0);
  const int64_t tile_bytes = w.tile_bytes();
  for (int64_t b = 0; b < blocks; ++b, tile += tile_bytes) {
    AccumulateTile<T, kNibble>(tile, a, b, acc);
  }
  int64_t lanes = std::min<int64_t>(kRowGroup, w.rows() - g * kRowGroup);
  __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1);
  for (int t = 0; t < T; ++t) {
    _mm512_mask_storeu_ps(out + (t0 + t) * ld_out + g * kRowGroup, mask, acc[t]);
  }
}

template <bool kNibble>
void MatmulFormat(const PackedMatrix& w, const QuantizedActivations& x, int64_t group_begin,
                  int64_t group_end, float* out, int64_t ld_out) {
  constexpr int kTokenTile = 4;
  const int64_t tokens = x.tokens();
  for (int64_t g = group_begin; g < group_end; ++g) {
    int64_t t = 0;
    for (; t + kTokenTile <= tokens; t += kTokenTile) {
      GroupTokens<kTokenTile, kNibble>(w, x, g, t, out, ld_out);
    }
    switch (tokens - t) {
      case 3:
        GroupTokens<3, kNibble>(w, x, g, t, out, ld_out);
        break;
      case 2:
        GroupTokens<2, kNibble>(w, x, g, t, out, ld_out);
        break;
      case 1:
        GroupTokens<1, kNibble>(w, x, g, t, out, ld_out);
        break;
      default:
        break;
    }
  }
}

void MatmulAvx512(const PackedMatrix& w, const QuantizedActivations& x, int64_t group_begin,
                  int64_t group_end, float* out, int64_t ld_out) {
  if (w.format() == PackedFormat::kNibble) {
    MatmulFormat<true>(w, x, group_begin, group_end, out, ld_out);
  } else {
    MatmulFormat<false>(w, x, group_begin, group_end, out, ld_out);
  }
}

void QuantizeRowAvx512(const float* x, int64_t cols, ActivationBlock* out) {
  const __m512 sign_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
    __m512 v0 = _mm512_loadu_ps(x + b * kQuantBlock);
    __m512 v1 = _mm512_loadu_ps(x + b * kQuantBlock + 16);
    __m512 amax_v = _mm512_max_ps(_mm512_and_ps(v0, sign_mask), _mm512_and_ps(v1, sign_mask));
    float amax = _mm512_reduce_max_ps(amax_v);
    float d = amax / 127.0f;
    float inv = d != 0.0f ? 1.0f / d : 0.0f;
    __m512 scale = _mm512_set1_ps(inv);
    // Round to nearest even, as std::nearbyint does in the scalar reference.
    __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, scale));
    __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, scale));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[b].q), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[b].q + 16), _mm512_cvtepi32_epi8(q1));
    int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    out[b].d = RoundToFp16(d);
    out[b].s = RoundToFp16(d * static_cast<float>(sum));
    out[b].sum = sum;
  }
}

float DotF32F16Avx512(const float* a, const uint16_t* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 bv = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i)));
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), bv, acc);
  }
  if (i < n) {
    __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512 bv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, b + i));
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i), bv, acc);
  }
  return _mm512_reduce_add_ps(acc);
}

void AxpyF16Avx512(float alpha, const uint16_t* x, float* y, int64_t n) {
  __m512 av = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 xv = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, xv, _mm512_loadu_ps(y + i)));
  }
  if (i < n) {
    __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, x + i));
    _mm512_mask_storeu_ps(y + i, mask, _mm512_fmadd_ps(av, xv, _mm512_maskz_loadu_ps(mask, y + i)));
  }
}

inline void WidenFp16(const uint16_t* src, float* dst, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(
        dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}
inline float RoundFp16(float x) { return _cvtsh_ss(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT)); }

#include "kernels/internal/attention_tile.inc"

}  // namespace

const KernelTable& Avx512Kernels() {
  static const KernelTable table = {MatmulAvx512, QuantizeRowAvx512, DotF32F16Avx512, AxpyF16Avx512,
                                    AttendTileImpl};
  return table;
}

}  // namespace tessera::kernels::internal
