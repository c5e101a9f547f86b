// AVX2 kernels (with FMA and F16C), for CPUs without AVX-512 VNNI. Each 64-byte chunk of a
// tile is two 8-row halves; VPMADDUBSW multiplies unsigned weight quants by signed activation
// quants into 16-bit pairs.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/internal/kernel_table.h"

namespace tessera::kernels::internal {
namespace {

inline __m256i Broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Integer dot products of one 8-row half (`half` 0 or 1) of a tile with one activation block.
template <bool kNibble>
inline __m256i HalfDot(const uint8_t* quants, int half, const int8_t* aq) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (kNibble) {
    // Nibble products fit 16 bits even summed over all eight chunks (8 * 2 * 15 * 127).
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i sum16 = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(quants + 64 * c + 32 * half));
      __m256i lo = _mm256_and_si256(v, low);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
      sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(lo, Broadcast4(aq + 4 * c)));
      sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(hi, Broadcast4(aq + 16 + 4 * c)));
    }
    return _mm256_madd_epi16(sum16, ones);
  } else {
    // Byte quants reach 255, so products are formed from the signed value (q - 128), which
    // with m = -128 d is the whole weight, with the sign moved onto the activation.
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
    __m256i sum32 = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(quants + 64 * c + 32 * half));
      __m256i ws = _mm256_xor_si256(v, bias);
      __m256i prod =
          _mm256_maddubs_epi16(_mm256_abs_epi8(ws), _mm256_sign_epi8(Broadcast4(aq + 4 * c), ws));
      sum32 = _mm256_add_epi32(sum32, _mm256_madd_epi16(prod, ones));
    }
    return sum32;
  }
}

template <bool kNibble>
void MatmulFormat(const PackedMatrix& w, const QuantizedActivations& x, int64_t group_begin,
                  int64_t group_end, float* out, int64_t ld_out) {
  const int64_t blocks = w.blocks_per_row();
  for (int64_t g = group_begin; g < group_end; ++g) {
    int64_t lanes = std::min<int64_t>(kRowGroup, w.rows() - g * kRowGroup);
    for (int64_t t = 0; t < x.tokens(); ++t) {
      const ActivationBlock* a = x.row(t);
      __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* tile = w.tile(g, b);
        const __m256 ad = _mm256_set1_ps(a[b].d);
        const __m256 as = _mm256_set1_ps(a[b].s);
        for (int half = 0; half < 2; ++half) {
          __m256 d =
              _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tile + 16 * half)));
          __m256 dot = _mm256_cvtepi32_ps(HalfDot<kNibble>(tile + 64, half, a[b].q));
          acc[half] = _mm256_fmadd_ps(dot, _mm256_mul_ps(d, ad), acc[half]);
          if constexpr (kNibble) {
            __m256 m = _mm256_cvtph_ps(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(tile + 32 + 16 * half)));
            acc[half] = _mm256_fmadd_ps(m, as, acc[half]);
          }
          // Byte tiles: the dot above already used the signed quants q - 128, and m = -128 d.
        }
      }
      float row[kRowGroup];
      _mm256_storeu_ps(row, acc[0]);
      _mm256_storeu_ps(row + 8, acc[1]);
      std::memcpy(out + t * ld_out + g * kRowGroup, row, lanes * sizeof(float));
    }
  }
}

void MatmulAvx2(const PackedMatrix& w, const QuantizedActivations& x, int64_t group_begin,
                int64_t group_end, float* out, int64_t ld_out) {
  if (w.format() == PackedFormat::kNibble) {
    MatmulFormat<true>(w, x, group_begin, group_end, out, ld_out);
  } else {
    MatmulFormat<false>(w, x, group_begin, group_end, out, ld_out);
  }
}

void QuantizeRowAvx2(const float* x, int64_t cols, ActivationBlock* out) {
  const __m256 sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
    __m256 v[4];
    __m256 amax_v = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(x + b * kQuantBlock + 8 * i);
      amax_v = _mm256_max_ps(amax_v, _mm256_and_ps(v[i], sign_mask));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax_v), _mm256_extractf128_ps(amax_v, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    float d = amax / 127.0f;
    float inv = d != 0.0f ? 1.0f / d : 0.0f;
    __m256 scale = _mm256_set1_ps(inv);
    __m256i sum = _mm256_setzero_si256();
    int32_t q32[kQuantBlock];
    for (int i = 0; i < 4; ++i) {
      __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], scale));
      sum = _mm256_add_epi32(sum, q);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q32 + 8 * i), q);
    }
    for (int k = 0; k < kQuantBlock; ++k) out[b].q[k] = static_cast<int8_t>(q32[k]);
    int32_t s8[8];
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(s8), sum);
    int total = 0;
    for (int i = 0; i < 8; ++i) total += s8[i];
    out[b].d = RoundToFp16(d);
    out[b].s = RoundToFp16(d * static_cast<float>(total));
    out[b].sum = total;
  }
}

float DotF32F16Avx2(const float* a, const uint16_t* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 bv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), bv, acc);
  }
  float sum = HorizontalSum(acc);
  for (; i < n; ++i) sum += a[i] * _cvtsh_ss(b[i]);
  return sum;
}

void AxpyF16Avx2(float alpha, const uint16_t* x, float* y, int64_t n) {
  __m256 av = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, xv, _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += alpha * _cvtsh_ss(x[i]);
}

inline void WidenFp16(const uint16_t* src, float* dst, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}
inline float RoundFp16(float x) { return _cvtsh_ss(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT)); }
inline void ExpShifted(float* v, int n, float shift) {
  for (int i = 0; i < n; ++i) v[i] = std::exp(v[i] - shift);
}

#include "kernels/internal/attention_tile.inc"

void SiluMulPlain(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace

const KernelTable& Avx2Kernels() {
  static const KernelTable table = {MatmulAvx2, QuantizeRowAvx2, DotF32F16Avx2, AxpyF16Avx2,
                                    SiluMulPlain, AttendTileImpl};
  return table;
}

}  // namespace tessera::kernels::internal
