// Portable reference kernels. The SIMD paths must agree with these (tests/kernels/); they
// compute the same integer block dot products and apply the scales in the same order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/internal/kernel_table.h"

namespace tessera::kernels::internal {
namespace {

void QuantizeRowScalar(const float* x, int64_t cols, ActivationBlock* out) {
  for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
    const float* v = x + b * kQuantBlock;
    float amax = 0.0f;
    for (int k = 0; k < kQuantBlock; ++k) amax = std::fmax(amax, std::fabs(v[k]));
    float d = amax / 127.0f;
    float inv = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int k = 0; k < kQuantBlock; ++k) {
      int q = static_cast<int>(std::nearbyint(v[k] * inv));
      out[b].q[k] = static_cast<int8_t>(q);
      sum += q;
    }
    out[b].d = RoundToFp16(d);
    out[b].s = RoundToFp16(d * static_cast<float>(sum));
    out[b].sum = sum;
  }
}

// bf16 tiles: each pair of elements is multiplied in fp32 (exact for bf16 inputs) and added
// to the row's fp32 sum, odd element first, as VDPBF16PS specifies.
void MatmulBf16Scalar(const PackedMatrix& w, const QuantizedActivations& x, int64_t group_begin,
                      int64_t group_end, float* out, int64_t ld_out) {
  const int64_t blocks = w.blocks_per_row();
  for (int64_t g = group_begin; g < group_end; ++g) {
    int lanes = static_cast<int>(std::min<int64_t>(kRowGroup, w.rows() - g * kRowGroup));
    for (int64_t t = 0; t < x.tokens(); ++t) {
      const uint16_t* a = x.bf16_row(t);
      float acc[kRowGroup] = {};
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* tile = w.tile(g, b);
        for (int p = 0; p < kQuantBlock / 2; ++p) {
          const float a0 = Bf16ToFp32(a[b * kQuantBlock + 2 * p]);
          const float a1 = Bf16ToFp32(a[b * kQuantBlock + 2 * p + 1]);
          for (int r = 0; r < kRowGroup; ++r) {
            // The pair as one little-endian word: element 2p in the low half, 2p + 1 in the
            // high half; a bf16 is the top half of its fp32. (Two 2-byte loads per pair here
            // came out wrong from GCC 12's -O3 vectorizer; the kernel tests caught it.)
            uint32_t pair;
            std::memcpy(&pair, tile + p * 64 + r * 4, 4);
            const uint32_t low = pair << 16, high = pair & 0xffff0000u;
            float w0, w1;
            std::memcpy(&w0, &low, 4);
            std::memcpy(&w1, &high, 4);
            acc[r] = acc[r] + w1 * a1 + w0 * a0;
          }
        }
      }
      for (int r = 0; r < lanes; ++r) out[t * ld_out + g * kRowGroup + r] = acc[r];
    }
  }
}

void MatmulScalar(const PackedMatrix& w, const QuantizedActivations& x, int64_t group_begin,
                  int64_t group_end, float* out, int64_t ld_out) {
  if (w.format() == PackedFormat::kBf16) {
    return MatmulBf16Scalar(w, x, group_begin, group_end, out, ld_out);
  }
  const int64_t blocks = w.blocks_per_row();
  const bool nibble = w.format() == PackedFormat::kNibble;
  for (int64_t g = group_begin; g < group_end; ++g) {
    int lanes = static_cast<int>(std::min<int64_t>(kRowGroup, w.rows() - g * kRowGroup));
    for (int64_t t = 0; t < x.tokens(); ++t) {
      const ActivationBlock* a = x.row(t);
      float acc[kRowGroup] = {};
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* tile = w.tile(g, b);
        const uint8_t* quants = tile + 4 * kRowGroup;
        for (int r = 0; r < kRowGroup; ++r) {
          int32_t dot = 0;
          if (nibble) {
            for (int c = 0; c < 4; ++c) {
              for (int j = 0; j < 4; ++j) {
                uint8_t byte = quants[c * 64 + r * 4 + j];
                dot += (byte & 0x0f) * a[b].q[4 * c + j] + (byte >> 4) * a[b].q[16 + 4 * c + j];
              }
            }
          } else {
            for (int c = 0; c < 8; ++c) {
              for (int j = 0; j < 4; ++j) dot += quants[c * 64 + r * 4 + j] * a[b].q[4 * c + j];
            }
          }
          uint16_t d16, m16;
          std::memcpy(&d16, tile + 2 * r, 2);
          std::memcpy(&m16, tile + 2 * kRowGroup + 2 * r, 2);
          float scale = Fp16ToFp32(d16) * a[b].d;
          if (nibble) {
            acc[r] = std::fma(static_cast<float>(dot), scale, acc[r]);
            acc[r] = std::fma(Fp16ToFp32(m16), a[b].s, acc[r]);
          } else {
            // Byte quants are q + 128 with m = -128 d: remove the offset exactly, in integers.
            acc[r] = std::fma(static_cast<float>(dot - 128 * a[b].sum), scale, acc[r]);
          }
        }
      }
      for (int r = 0; r < lanes; ++r) out[t * ld_out + g * kRowGroup + r] = acc[r];
    }
  }
}

float DotF32F16Scalar(const float* a, const uint16_t* b, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * Fp16ToFp32(b[i]);
  return sum;
}

void AxpyF16Scalar(float alpha, const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * Fp16ToFp32(x[i]);
}

inline void WidenFp16(const uint16_t* src, float* dst, int n) {
  for (int i = 0; i < n; ++i) dst[i] = Fp16ToFp32(src[i]);
}
inline float RoundFp16(float x) { return RoundToFp16(x); }
inline void ExpShifted(float* v, int n, float shift) {
  for (int i = 0; i < n; ++i) v[i] = std::exp(v[i] - shift);
}

#include "kernels/internal/attention_tile.inc"

void SiluMulPlain(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace

const KernelTable& ScalarKernels() {
  static const KernelTable table = {MatmulScalar, QuantizeRowScalar, DotF32F16Scalar, AxpyF16Scalar,
                                    SiluMulPlain, AttendTileImpl};
  return table;
}

}  // namespace tessera::kernels::internal
