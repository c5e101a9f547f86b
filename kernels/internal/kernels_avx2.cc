// AVX2 kernels (with FMA and F16C), for CPUs without AVX-512 VNNI. Each 64-byte chunk of a
// tile is two 8-row halves; VPMADDUBSW multiplies unsigned weight quants by signed activation
// quants into 16-bit pairs.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
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
  if (w.format() == PackedFormat::kBf16) {
    MatmulBf16Avx2(w, x, group_begin, group_end, out, ld_out);
  } else if (w.format() == PackedFormat::kNibble) {
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

// exp(x) for 8 lanes, as Exp16 in the AVX-512 kernels: x = n ln2 + r, e^r by the Cephes
// polynomial (relative error ~1e-7), times 2^n built in the exponent bits. Inputs below -87
// give ~0 rather than denormals; attention only feeds it x <= 0.
inline __m256 Exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i scale = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

inline float HorizontalMax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline void Transpose8x8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  __m256 u[8];
  for (int i = 0; i < 2; ++i) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
    r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
  }
}

// The AVX-512 kernels' AttendPrefill on 8-lane vectors: a KV chunk of 8 positions, keys
// transposed once per chunk, four query rows per pass. With 16 registers the PV accumulators
// go one 8-dimension slice at a time (four rows' slices in registers, over the chunk's
// positions).
template <int kVectors>
void AttendTileAvx2Impl(const AttentionShape& shape, const PagedKv& kv, const float* q,
                        int64_t q_stride, int64_t first_pos, int tokens, int32_t kv_head,
                        float* out, int64_t out_stride) {
  constexpr int kDim = 8 * kVectors;
  constexpr int kRowBlock = 4;
  const int group = shape.num_heads / shape.num_kv_heads;
  const int rows = tokens * group;
  const int padded = (rows + kRowBlock - 1) / kRowBlock * kRowBlock;
  const int bs = shape.block_size;
  const int64_t kv_dim = int64_t{shape.num_kv_heads} * kDim;
  const int64_t head_offset = int64_t{kv_head} * kDim;
  const int64_t last_pos = first_pos + tokens - 1;

  thread_local std::vector<float> buffer;
  buffer.resize(static_cast<size_t>(padded) * 2 * kDim + 16 * kDim + 8);
  float* qr = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(buffer.data()) + 31) &
                                       ~uintptr_t{31});
  float* acc = qr + static_cast<size_t>(padded) * kDim;
  float* kt = acc + static_cast<size_t>(padded) * kDim;  // [kDim][8]
  float* vf = kt + 8 * kDim;                             // [8][kDim]
  thread_local std::vector<float> row_max, row_sum;
  thread_local std::vector<int64_t> row_pos;
  row_max.assign(padded, -INFINITY);
  row_sum.assign(padded, 0.0f);
  row_pos.resize(padded);
  for (int r = 0; r < padded; ++r) {
    const int real = std::min(r, rows - 1);  // Padding rows repeat the last real row.
    const int t = real / group, h = kv_head * group + real % group;
    const float* src = q + t * q_stride + int64_t{h} * kDim;
    for (int v = 0; v < kVectors; ++v) {
      __m256 x = _mm256_cvtph_ps(
          _mm256_cvtps_ph(_mm256_loadu_ps(src + 8 * v), _MM_FROUND_TO_NEAREST_INT));
      _mm256_store_ps(qr + r * kDim + 8 * v, _mm256_mul_ps(x, _mm256_set1_ps(shape.scale)));
      _mm256_store_ps(acc + r * kDim + 8 * v, _mm256_setzero_ps());
    }
    row_pos[r] = first_pos + t;
  }

  const __m256 lanes = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
  alignas(32) float weights[kRowBlock][8];
  alignas(32) float corrections[8] = {};  // Exponents first, then their exp.
  for (int64_t start = 0; start <= last_pos; start += 8) {
    const int n = static_cast<int>(std::min<int64_t>(8, last_pos - start + 1));
    const uint16_t* key_rows[8];
    for (int j = 0; j < n; ++j) {
      const int64_t p = start + j;
      const int64_t at = (p % bs) * kv_dim + head_offset;
      key_rows[j] = kv.key_blocks[p / bs] + at;
      const uint16_t* value = kv.value_blocks[p / bs] + at;
      for (int v = 0; v < kVectors; ++v) {
        _mm256_store_ps(vf + j * kDim + 8 * v,
                        _mm256_cvtph_ps(_mm_loadu_si128(
                            reinterpret_cast<const __m128i*>(value + 8 * v))));
      }
    }
    for (int v = 0; v < kVectors; ++v) {
      __m256 block[8];
      for (int j = 0; j < 8; ++j) {
        block[j] = j < n ? _mm256_cvtph_ps(_mm_loadu_si128(
                               reinterpret_cast<const __m128i*>(key_rows[j] + 8 * v)))
                         : _mm256_setzero_ps();
      }
      Transpose8x8(block);
      for (int d = 0; d < 8; ++d) _mm256_store_ps(kt + (8 * v + d) * 8, block[d]);
    }
    // Rows are in token order, so the rows that see this chunk at all are a suffix.
    const int first_row =
        static_cast<int>(std::max<int64_t>(0, start - first_pos)) * group / kRowBlock * kRowBlock;
    for (int rb = first_row; rb < padded; rb += kRowBlock) {
      __m256 scores[kRowBlock];
      for (int i = 0; i < kRowBlock; ++i) scores[i] = _mm256_setzero_ps();
      const float* qb = qr + rb * kDim;
      for (int d = 0; d < kDim; ++d) {
        const __m256 k = _mm256_load_ps(kt + d * 8);
        for (int i = 0; i < kRowBlock; ++i) {
          scores[i] = _mm256_fmadd_ps(_mm256_set1_ps(qb[i * kDim + d]), k, scores[i]);
        }
      }
      for (int i = 0; i < kRowBlock; ++i) {
        const int r = rb + i;
        const int64_t visible = std::min<int64_t>(n, row_pos[r] - start + 1);
        if (visible <= 0) {
          _mm256_store_ps(weights[i], _mm256_setzero_ps());
          corrections[i] = 0.0f;  // exp(0): the row is unchanged.
          continue;
        }
        const __m256 mask =
            _mm256_cmp_ps(lanes, _mm256_set1_ps(static_cast<float>(visible)), _CMP_LT_OQ);
        const __m256 masked = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), scores[i], mask);
        const float m = std::max(row_max[r], HorizontalMax(masked));
        const __m256 p =
            _mm256_and_ps(mask, Exp8(_mm256_sub_ps(scores[i], _mm256_set1_ps(m))));
        _mm256_store_ps(weights[i], p);
        corrections[i] = row_max[r] - m;
        row_max[r] = m;
      }
      _mm256_store_ps(corrections, Exp8(_mm256_load_ps(corrections)));
      for (int i = 0; i < kRowBlock; ++i) {
        const int r = rb + i;
        row_sum[r] = row_sum[r] * corrections[i] + HorizontalSum(_mm256_load_ps(weights[i]));
      }
      for (int v = 0; v < kVectors; ++v) {
        __m256 a[kRowBlock];
        for (int i = 0; i < kRowBlock; ++i) {
          a[i] = _mm256_mul_ps(_mm256_load_ps(acc + (rb + i) * kDim + 8 * v),
                               _mm256_set1_ps(corrections[i]));
        }
        for (int j = 0; j < n; ++j) {
          const __m256 value = _mm256_load_ps(vf + j * kDim + 8 * v);
          for (int i = 0; i < kRowBlock; ++i) {
            a[i] = _mm256_fmadd_ps(_mm256_set1_ps(weights[i][j]), value, a[i]);
          }
        }
        for (int i = 0; i < kRowBlock; ++i) _mm256_store_ps(acc + (rb + i) * kDim + 8 * v, a[i]);
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
    const int t = r / group, h = kv_head * group + r % group;
    float* dst = out + t * out_stride + int64_t{h} * kDim;
    const __m256 inv = _mm256_set1_ps(1.0f / row_sum[r]);
    for (int v = 0; v < kVectors; ++v) {
      _mm256_storeu_ps(dst + 8 * v, _mm256_mul_ps(_mm256_load_ps(acc + r * kDim + 8 * v), inv));
    }
  }
}

void AttendTileAvx2(const AttentionShape& shape, const PagedKv& kv, const float* q,
                    int64_t q_stride, int64_t first_pos, int tokens, int32_t kv_head, float* out,
                    int64_t out_stride) {
  switch (shape.head_dim) {
    case 32:
      return AttendTileAvx2Impl<4>(shape, kv, q, q_stride, first_pos, tokens, kv_head, out,
                                   out_stride);
    case 64:
      return AttendTileAvx2Impl<8>(shape, kv, q, q_stride, first_pos, tokens, kv_head, out,
                                   out_stride);
    case 128:
      return AttendTileAvx2Impl<16>(shape, kv, q, q_stride, first_pos, tokens, kv_head, out,
                                    out_stride);
    default:
      return AttendTileImpl(shape, kv, q, q_stride, first_pos, tokens, kv_head, out, out_stride);
  }
}

void SiluMulPlain(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// bf16 tiles widened to fp32 in registers (a bf16 is the top half of an fp32): the low
// element of each pair by a shift, the high one by a mask; then FMAs, high element first.
// kTokens tokens share each widened weight vector.
template <int kTokens>
void Bf16Tokens(const PackedMatrix& w, const QuantizedActivations& x, int64_t g, int64_t t0,
                float* out, int64_t ld_out) {
  const __m256i high_half = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  __m256 acc[kTokens][2];
  for (int t = 0; t < kTokens; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  const uint16_t* a[kTokens];
  for (int t = 0; t < kTokens; ++t) a[t] = x.bf16_row(t0 + t);
  for (int64_t b = 0; b < w.blocks_per_row(); ++b) {
    const uint8_t* tile = w.tile(g, b);
    for (int p = 0; p < kQuantBlock / 2; ++p) {
      __m256 lo[2], hi[2];
      for (int h = 0; h < 2; ++h) {
        const __m256i v =
            _mm256_load_si256(reinterpret_cast<const __m256i*>(tile + p * 64 + h * 32));
        lo[h] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        hi[h] = _mm256_castsi256_ps(_mm256_and_si256(v, high_half));
      }
      for (int t = 0; t < kTokens; ++t) {
        const __m256 a0 = _mm256_set1_ps(Bf16ToFp32(a[t][b * kQuantBlock + 2 * p]));
        const __m256 a1 = _mm256_set1_ps(Bf16ToFp32(a[t][b * kQuantBlock + 2 * p + 1]));
        for (int h = 0; h < 2; ++h) {
          acc[t][h] = _mm256_fmadd_ps(hi[h], a1, acc[t][h]);
          acc[t][h] = _mm256_fmadd_ps(lo[h], a0, acc[t][h]);
        }
      }
    }
  }
  const int64_t lanes = std::min<int64_t>(kRowGroup, w.rows() - g * kRowGroup);
  for (int t = 0; t < kTokens; ++t) {
    alignas(32) float rows[kRowGroup];
    _mm256_store_ps(rows, acc[t][0]);
    _mm256_store_ps(rows + 8, acc[t][1]);
    std::memcpy(out + (t0 + t) * ld_out + g * kRowGroup, rows, sizeof(float) * lanes);
  }
}

}  // namespace

void MatmulBf16Avx2(const PackedMatrix& w, const QuantizedActivations& x, int64_t group_begin,
                    int64_t group_end, float* out, int64_t ld_out) {
  constexpr int kTokenTile = 4;
  for (int64_t g = group_begin; g < group_end; ++g) {
    int64_t t = 0;
    for (; t + kTokenTile <= x.tokens(); t += kTokenTile) {
      Bf16Tokens<kTokenTile>(w, x, g, t, out, ld_out);
    }
    for (; t < x.tokens(); ++t) Bf16Tokens<1>(w, x, g, t, out, ld_out);
  }
}

const KernelTable& Avx2Kernels() {
  static const KernelTable table = {MatmulAvx2, QuantizeRowAvx2, DotF32F16Avx2, AxpyF16Avx2,
                                    SiluMulPlain, AttendTileAvx2};
  return table;
}

}  // namespace tessera::kernels::internal
