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

#ifndef TESSERA_PREFETCH_TILES
#define TESSERA_PREFETCH_TILES 8
#endif
#ifndef TESSERA_AVX512_TOKEN_TILE
#define TESSERA_AVX512_TOKEN_TILE 4
#endif

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

constexpr int64_t kPrefetchTiles = TESSERA_PREFETCH_TILES;

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
    // Weights stream from memory once per step: fetch a few tiles ahead (into the next row
    // group near the end), beyond what the hardware prefetcher runs ahead on its own.
    for (int64_t line = 0; line < tile_bytes; line += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(tile + kPrefetchTiles * tile_bytes + line),
                   _MM_HINT_T0);
    }
    AccumulateTile<T, kNibble>(tile, a, b, acc);
  }
  int64_t lanes = std::min<int64_t>(kRowGroup, w.rows() - g * kRowGroup);
  __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1);
  for (int t = 0; t < T; ++t) {
    _mm512_mask_storeu_ps(out + (t0 + t) * ld_out + g * kRowGroup, mask, acc[t]);
  }
}

// Runs GroupTokens<remaining> for remaining in [1, kMax].
template <int kMax, bool kNibble>
inline void RemainderTokens(const PackedMatrix& w, const QuantizedActivations& x, int64_t g,
                            int64_t t0, int64_t remaining, float* out, int64_t ld_out) {
  if constexpr (kMax >= 1) {
    if (remaining == kMax) {
      GroupTokens<kMax, kNibble>(w, x, g, t0, out, ld_out);
    } else {
      RemainderTokens<kMax - 1, kNibble>(w, x, g, t0, remaining, out, ld_out);
    }
  }
}

template <bool kNibble>
void MatmulFormat(const PackedMatrix& w, const QuantizedActivations& x, int64_t group_begin,
                  int64_t group_end, float* out, int64_t ld_out) {
  // Up to kTokenTile tokens share each unpacked weight tile; more would spill registers.
  constexpr int kTokenTile = TESSERA_AVX512_TOKEN_TILE;
  const int64_t tokens = x.tokens();
  // The next group's weights come in through GroupTokens' own prefetch, a few tiles ahead.
  // Prefetching a whole group here in one burst stalls on the queue of outstanding misses
  // (it took ~5% of decode time at batch 16).
  for (int64_t g = group_begin; g < group_end; ++g) {
    int64_t t = 0;
    for (; t + kTokenTile <= tokens; t += kTokenTile) {
      GroupTokens<kTokenTile, kNibble>(w, x, g, t, out, ld_out);
    }
    RemainderTokens<kTokenTile - 1, kNibble>(w, x, g, t, tokens - t, out, ld_out);
  }
}

void MatmulAvx512(const PackedMatrix& w, const QuantizedActivations& x, int64_t group_begin,
                  int64_t group_end, float* out, int64_t ld_out) {
  if (w.format() == PackedFormat::kBf16) {
    static const bool dot_bf16 = GetCpuFeatures().avx512_bf16;
    if (dot_bf16) {
      MatmulBf16Avx512Bf16(w, x, group_begin, group_end, out, ld_out);
    } else {
      MatmulBf16Avx2(w, x, group_begin, group_end, out, ld_out);
    }
  } else if (w.format() == PackedFormat::kNibble) {
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

// exp(x) for 16 lanes: x = n ln2 + r with |r| <= ln2 / 2, e^r by the Cephes polynomial
// (relative error ~1e-7, like expf), scaled by 2^n with VSCALEFPS. Inputs below -87 give ~0
// rather than denormals; attention only feeds it x <= 0.
inline __m512 Exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

void SiluMulAvx512(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 mask = n - i >= 16 ? 0xffff : static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512 g = _mm512_maskz_loadu_ps(mask, gate + i);
    __m512 u = _mm512_maskz_loadu_ps(mask, up + i);
    // silu(g) = g / (1 + exp(-g)); exp(-g) for g < -87 is clamped, where silu is ~0 anyway.
    __m512 e = Exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
    __m512 silu = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    _mm512_mask_storeu_ps(out + i, mask, _mm512_mul_ps(silu, u));
  }
}

inline void ExpShifted(float* v, int n, float shift) {
  for (int i = 0; i < n; i += 16) {
    __mmask16 mask = n - i >= 16 ? 0xffff : static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512 x = _mm512_maskz_loadu_ps(mask, v + i);
    _mm512_mask_storeu_ps(v + i, mask, Exp16(_mm512_sub_ps(x, _mm512_set1_ps(shift))));
  }
}

#include "kernels/internal/attention_tile.inc"

// Lane j of the result is the sum of the 16 lanes of v[j]: a transpose-and-add tree (15 adds
// and 30 shuffles for 16 sums, against ~8 instructions for each horizontal sum alone).
inline __m512 SumLanes16(const __m512 v[16]) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i) {
    // Per 128-bit lane: [x0+x2, y0+y2, x1+x3, y1+y3] of v[2i] = x, v[2i+1] = y.
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  }
  for (int i = 0; i < 4; ++i) {
    // Per 128-bit lane: that lane's partial sums of v[4i .. 4i + 3], in order.
    b[i] = _mm512_add_ps(_mm512_shuffle_ps(a[2 * i], a[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(a[2 * i], a[2 * i + 1], 0xEE));
  }
  for (int i = 0; i < 2; ++i) {
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  }
  return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88),
                       _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
}

// Decode: one token, so each KV row is used by only the few query heads of its group. Rows are
// widened and dotted in registers instead of going through the tile's transposed buffer.
// kVectors = head_dim / 16 is a template parameter so each head's accumulators stay in
// registers across positions.
constexpr int kMaxDecodeGroup = 8;

template <int kVectors>
void AttendDecode(const AttentionShape& shape, const PagedKv& kv, const float* q, int64_t pos,
                  int32_t kv_head, float* out) {
  const int group = shape.num_heads / shape.num_kv_heads;
  const int bs = shape.block_size;
  const int64_t kv_dim = int64_t{shape.num_kv_heads} * shape.head_dim;
  const int64_t head_offset = int64_t{kv_head} * shape.head_dim;
  alignas(64) float qv[kMaxDecodeGroup][kVectors * 16];
  alignas(64) float acc[kMaxDecodeGroup][kVectors * 16] = {};
  float row_max[kMaxDecodeGroup], row_sum[kMaxDecodeGroup];
  for (int r = 0; r < group; ++r) {
    const float* src = q + int64_t{kv_head * group + r} * shape.head_dim;
    for (int v = 0; v < kVectors; ++v) {
      // Round the query to fp16 (the keys' precision) and fold in the scale, as the tile does.
      __m512 x = _mm512_cvtph_ps(
          _mm512_cvtps_ph(_mm512_loadu_ps(src + 16 * v), _MM_FROUND_TO_NEAREST_INT));
      _mm512_store_ps(qv[r] + 16 * v, _mm512_mul_ps(x, _mm512_set1_ps(shape.scale)));
    }
    row_max[r] = -INFINITY;
    row_sum[r] = 0.0f;
  }
  alignas(64) float scores[kMaxDecodeGroup][16];
  // The chunk's keys and values widened to fp32 once, for all of the group's heads.
  alignas(64) float keys[16][kVectors * 16];
  // Value rows are widened inside the PV loop instead, once for up to kPvHeads heads whose
  // accumulators stay in registers: storing and reloading widened rows cost more than the
  // conversion.
  constexpr int kPvHeads = std::min(kMaxDecodeGroup, std::max(1, 24 / kVectors));
  const uint16_t* value_rows[16];
  float correction[kMaxDecodeGroup];
  for (int64_t start = 0; start <= pos; start += 16) {
    const int n = static_cast<int>(std::min<int64_t>(16, pos - start + 1));
    for (int j = 0; j < n; ++j) {
      const int64_t p = start + j;
      const int64_t at = (p % bs) * kv_dim + head_offset;
      const uint16_t* key = kv.key_blocks[p / bs] + at;
      value_rows[j] = kv.value_blocks[p / bs] + at;
      for (int v = 0; v < kVectors; ++v) {
        _mm512_store_ps(keys[j] + 16 * v, _mm512_cvtph_ps(_mm256_loadu_si256(
                                              reinterpret_cast<const __m256i*>(key + 16 * v))));
      }
    }
    for (int r = 0; r < group; ++r) {
      __m512 qr[kVectors];
      for (int v = 0; v < kVectors; ++v) qr[v] = _mm512_load_ps(qv[r] + 16 * v);
      __m512 partial[16];
      for (int j = 0; j < 16; ++j) {
        if (j >= n) {
          partial[j] = _mm512_setzero_ps();
          continue;
        }
        __m512 dot = _mm512_mul_ps(qr[0], _mm512_load_ps(keys[j]));
        for (int v = 1; v < kVectors; ++v) {
          dot = _mm512_fmadd_ps(qr[v], _mm512_load_ps(keys[j] + 16 * v), dot);
        }
        partial[j] = dot;
      }
      _mm512_store_ps(scores[r], SumLanes16(partial));
    }
    const __mmask16 mask = n >= 16 ? 0xffff : static_cast<__mmask16>((1u << n) - 1);
    for (int r = 0; r < group; ++r) {
      const __m512 s = _mm512_load_ps(scores[r]);
      const float m = std::max(row_max[r], _mm512_mask_reduce_max_ps(mask, s));
      correction[r] = std::exp(row_max[r] - m);
      const __m512 p = _mm512_maskz_mov_ps(mask, Exp16(_mm512_sub_ps(s, _mm512_set1_ps(m))));
      _mm512_store_ps(scores[r], p);
      row_sum[r] = row_sum[r] * correction[r] + _mm512_reduce_add_ps(p);
      row_max[r] = m;
    }
    for (int r0 = 0; r0 < group; r0 += kPvHeads) {
      const int heads = std::min(kPvHeads, group - r0);
      __m512 a[kPvHeads][kVectors];
      for (int i = 0; i < kPvHeads; ++i) {
        if (i >= heads) break;
        const __m512 c = _mm512_set1_ps(correction[r0 + i]);
        for (int v = 0; v < kVectors; ++v) {
          a[i][v] = _mm512_mul_ps(_mm512_load_ps(acc[r0 + i] + 16 * v), c);
        }
      }
      for (int j = 0; j < n; ++j) {
        for (int v = 0; v < kVectors; ++v) {
          const __m512 value = _mm512_cvtph_ps(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(value_rows[j] + 16 * v)));
          for (int i = 0; i < kPvHeads; ++i) {
            if (i >= heads) break;
            a[i][v] = _mm512_fmadd_ps(_mm512_set1_ps(scores[r0 + i][j]), value, a[i][v]);
          }
        }
      }
      for (int i = 0; i < kPvHeads; ++i) {
        if (i >= heads) break;
        for (int v = 0; v < kVectors; ++v) _mm512_store_ps(acc[r0 + i] + 16 * v, a[i][v]);
      }
    }
  }
  for (int r = 0; r < group; ++r) {
    float* dst = out + int64_t{kv_head * group + r} * shape.head_dim;
    const __m512 inv = _mm512_set1_ps(1.0f / row_sum[r]);
    for (int v = 0; v < kVectors; ++v) {
      _mm512_storeu_ps(dst + 16 * v, _mm512_mul_ps(_mm512_load_ps(acc[r] + 16 * v), inv));
    }
  }
}

// Prefill: a tile of consecutive tokens, so each KV chunk is used by many query rows. The
// chunk's keys are widened and transposed once ([dim][16 positions]), then query rows go
// through it four at a time: per dimension one key vector feeds four rows' scores, and per
// position one value row feeds four rows' accumulators, all in registers. The online softmax
// works on the 16 scores of a row as one vector.
inline void Transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xDD);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xDD);
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
  }
}

template <int kVectors>
void AttendPrefill(const AttentionShape& shape, const PagedKv& kv, const float* q,
                   int64_t q_stride, int64_t first_pos, int tokens, int32_t kv_head, float* out,
                   int64_t out_stride) {
  constexpr int kDim = 16 * kVectors;
  constexpr int kRowBlock = kVectors <= 4 ? 4 : 2;  // Accumulators: kRowBlock * kVectors zmm.
  const int group = shape.num_heads / shape.num_kv_heads;
  const int rows = tokens * group;
  const int padded = (rows + kRowBlock - 1) / kRowBlock * kRowBlock;
  const int bs = shape.block_size;
  const int64_t kv_dim = int64_t{shape.num_kv_heads} * kDim;
  const int64_t head_offset = int64_t{kv_head} * kDim;
  const int64_t last_pos = first_pos + tokens - 1;

  // Per row: query (fp16-rounded, scaled) and accumulator, kVectors vectors each; then the
  // chunk's transposed keys and its values.
  thread_local std::vector<float> buffer;
  buffer.resize(static_cast<size_t>(padded) * 2 * kDim + 32 * kDim + 16);
  // Aligned to 64 bytes for the aligned vector loads and stores below.
  float* qr = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(buffer.data()) + 63) &
                                       ~uintptr_t{63});
  float* acc = qr + static_cast<size_t>(padded) * kDim;
  float* kt = acc + static_cast<size_t>(padded) * kDim;  // [kDim][16]
  float* vf = kt + 16 * kDim;                            // [16][kDim]
  thread_local std::vector<float> row_max, row_sum;
  thread_local std::vector<int64_t> row_pos;
  row_max.assign(padded, -INFINITY);
  row_sum.assign(padded, 0.0f);
  row_pos.resize(padded);
  for (int r = 0; r < padded; ++r) {
    // Padding rows repeat the last real row; their results are dropped.
    const int real = std::min(r, rows - 1);
    const int t = real / group, h = kv_head * group + real % group;
    const float* src = q + t * q_stride + int64_t{h} * kDim;
    for (int v = 0; v < kVectors; ++v) {
      __m512 x = _mm512_cvtph_ps(
          _mm512_cvtps_ph(_mm512_loadu_ps(src + 16 * v), _MM_FROUND_TO_NEAREST_INT));
      _mm512_store_ps(qr + r * kDim + 16 * v, _mm512_mul_ps(x, _mm512_set1_ps(shape.scale)));
      _mm512_store_ps(acc + r * kDim + 16 * v, _mm512_setzero_ps());
    }
    row_pos[r] = first_pos + t;
  }

  alignas(64) float weights[kRowBlock][16];
  alignas(64) float corrections[16] = {};  // Exponents first, then their exp.
  for (int64_t start = 0; start <= last_pos; start += 16) {
    const int n = static_cast<int>(std::min<int64_t>(16, last_pos - start + 1));
    const uint16_t* key_rows[16];
    for (int j = 0; j < n; ++j) {
      const int64_t p = start + j;
      const int64_t at = (p % bs) * kv_dim + head_offset;
      key_rows[j] = kv.key_blocks[p / bs] + at;
      const uint16_t* value = kv.value_blocks[p / bs] + at;
      for (int v = 0; v < kVectors; ++v) {
        _mm512_store_ps(vf + j * kDim + 16 * v,
                        _mm512_cvtph_ps(_mm256_loadu_si256(
                            reinterpret_cast<const __m256i*>(value + 16 * v))));
      }
    }
    for (int v = 0; v < kVectors; ++v) {
      __m512 block[16];
      for (int j = 0; j < 16; ++j) {
        block[j] = j < n ? _mm512_cvtph_ps(_mm256_loadu_si256(
                               reinterpret_cast<const __m256i*>(key_rows[j] + 16 * v)))
                         : _mm512_setzero_ps();
      }
      Transpose16x16(block);
      for (int d = 0; d < 16; ++d) _mm512_store_ps(kt + (16 * v + d) * 16, block[d]);
    }
    // Rows are in token order, so the rows that see this chunk at all are a suffix.
    const int first_row =
        static_cast<int>(std::max<int64_t>(0, start - first_pos)) * group / kRowBlock * kRowBlock;
    for (int rb = first_row; rb < padded; rb += kRowBlock) {
      __m512 scores[kRowBlock];
      for (int i = 0; i < kRowBlock; ++i) scores[i] = _mm512_setzero_ps();
      const float* qb = qr + rb * kDim;
      for (int d = 0; d < kDim; ++d) {
        const __m512 k = _mm512_load_ps(kt + d * 16);
        for (int i = 0; i < kRowBlock; ++i) {
          scores[i] = _mm512_fmadd_ps(_mm512_set1_ps(qb[i * kDim + d]), k, scores[i]);
        }
      }
      for (int i = 0; i < kRowBlock; ++i) {
        const int r = rb + i;
        const int64_t visible = std::min<int64_t>(n, row_pos[r] - start + 1);
        if (visible <= 0) {
          _mm512_store_ps(weights[i], _mm512_setzero_ps());
          corrections[i] = 0.0f;  // exp(0): the row is unchanged.
          continue;
        }
        const __mmask16 mask =
            visible >= 16 ? 0xffff : static_cast<__mmask16>((1u << visible) - 1);
        const float m = std::max(
            row_max[r], _mm512_mask_reduce_max_ps(mask, scores[i]));
        const __m512 p =
            _mm512_maskz_mov_ps(mask, Exp16(_mm512_sub_ps(scores[i], _mm512_set1_ps(m))));
        _mm512_store_ps(weights[i], p);
        // exp(old max - new max), for the four rows at once below.
        corrections[i] = row_max[r] - m;
        row_max[r] = m;
      }
      const __m512 c = Exp16(_mm512_load_ps(corrections));
      _mm512_store_ps(corrections, c);
      __m512 a[kRowBlock][kVectors];
      for (int i = 0; i < kRowBlock; ++i) {
        const int r = rb + i;
        row_sum[r] = row_sum[r] * corrections[i] + _mm512_reduce_add_ps(_mm512_load_ps(weights[i]));
        const __m512 ci = _mm512_set1_ps(corrections[i]);
        for (int v = 0; v < kVectors; ++v) {
          a[i][v] = _mm512_mul_ps(_mm512_load_ps(acc + r * kDim + 16 * v), ci);
        }
      }
      for (int j = 0; j < n; ++j) {
        for (int v = 0; v < kVectors; ++v) {
          const __m512 value = _mm512_load_ps(vf + j * kDim + 16 * v);
          for (int i = 0; i < kRowBlock; ++i) {
            a[i][v] = _mm512_fmadd_ps(_mm512_set1_ps(weights[i][j]), value, a[i][v]);
          }
        }
      }
      for (int i = 0; i < kRowBlock; ++i) {
        for (int v = 0; v < kVectors; ++v) _mm512_store_ps(acc + (rb + i) * kDim + 16 * v, a[i][v]);
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
    const int t = r / group, h = kv_head * group + r % group;
    float* dst = out + t * out_stride + int64_t{h} * kDim;
    const __m512 inv = _mm512_set1_ps(1.0f / row_sum[r]);
    for (int v = 0; v < kVectors; ++v) {
      _mm512_storeu_ps(dst + 16 * v, _mm512_mul_ps(_mm512_load_ps(acc + r * kDim + 16 * v), inv));
    }
  }
}

void AttendTileAvx512(const AttentionShape& shape, const PagedKv& kv, const float* q,
                      int64_t q_stride, int64_t first_pos, int tokens, int32_t kv_head, float* out,
                      int64_t out_stride) {
  const int group = shape.num_heads / shape.num_kv_heads;
  if (tokens == 1 && group <= kMaxDecodeGroup) {
    switch (shape.head_dim) {
      case 32:
        return AttendDecode<2>(shape, kv, q, first_pos, kv_head, out);
      case 64:
        return AttendDecode<4>(shape, kv, q, first_pos, kv_head, out);
      case 128:
        return AttendDecode<8>(shape, kv, q, first_pos, kv_head, out);
      default:
        break;
    }
  }
  switch (shape.head_dim) {
    case 32:
      return AttendPrefill<2>(shape, kv, q, q_stride, first_pos, tokens, kv_head, out, out_stride);
    case 64:
      return AttendPrefill<4>(shape, kv, q, q_stride, first_pos, tokens, kv_head, out, out_stride);
    case 128:
      return AttendPrefill<8>(shape, kv, q, q_stride, first_pos, tokens, kv_head, out, out_stride);
    default:
      break;
  }
  AttendTileImpl(shape, kv, q, q_stride, first_pos, tokens, kv_head, out, out_stride);
}

}  // namespace

const KernelTable& Avx512Kernels() {
  static const KernelTable table = {MatmulAvx512,  QuantizeRowAvx512, DotF32F16Avx512,
                                    AxpyF16Avx512, SiluMulAvx512,     AttendTileAvx512};
  return table;
}

}  // namespace tessera::kernels::internal
