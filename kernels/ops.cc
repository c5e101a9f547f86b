#include "kernels/ops.h"

#include "kernels/internal/kernel_table.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tessera::kernels {

void RmsNorm(const float* x, const float* weight, int64_t n, float epsilon, float* out) {
  // Accumulate in double: a long row of small values loses little, and this is cheap.
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  float scale = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + epsilon));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

std::vector<float> RopeFrequencies(int64_t rope_dim, float base) {
  std::vector<float> inv_freq(static_cast<size_t>(rope_dim / 2));
  for (int64_t i = 0; i < rope_dim / 2; ++i) {
    inv_freq[i] = std::pow(base, -2.0f * static_cast<float>(i) / static_cast<float>(rope_dim));
  }
  return inv_freq;
}

void ApplyRope(float* x, int64_t num_heads, int64_t head_dim, int64_t rope_dim, int64_t pos,
               float base) {
  ApplyRope(x, num_heads, head_dim, rope_dim, pos, RopeFrequencies(rope_dim, base).data(),
            1.0f);
}

void ApplyRopeHalves(float* x, int64_t num_heads, int64_t head_dim, int64_t rope_dim,
                     int64_t pos, float base) {
  ApplyRopeHalves(x, num_heads, head_dim, rope_dim, pos,
                  RopeFrequencies(rope_dim, base).data(), 1.0f);
}

void ApplyRope(float* x, int64_t num_heads, int64_t head_dim, int64_t rope_dim, int64_t pos,
               const float* inv_freq, float magnitude) {
  for (int64_t i = 0; i < rope_dim / 2; ++i) {
    const float theta = static_cast<float>(pos) * inv_freq[i];
    const float c = std::cos(theta) * magnitude, s = std::sin(theta) * magnitude;
    for (int64_t h = 0; h < num_heads; ++h) {
      float* p = x + h * head_dim + 2 * i;
      const float a = p[0], b = p[1];
      p[0] = a * c - b * s;
      p[1] = a * s + b * c;
    }
  }
}

void ApplyRopeHalves(float* x, int64_t num_heads, int64_t head_dim, int64_t rope_dim,
                     int64_t pos, const float* inv_freq, float magnitude) {
  const int64_t half = rope_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float theta = static_cast<float>(pos) * inv_freq[i];
    const float c = std::cos(theta) * magnitude, s = std::sin(theta) * magnitude;
    for (int64_t h = 0; h < num_heads; ++h) {
      float* p = x + h * head_dim;
      const float a = p[i], b = p[i + half];
      p[i] = a * c - b * s;
      p[i + half] = a * s + b * c;
    }
  }
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out, Isa isa) {
  internal::KernelsFor(isa).silu_mul(gate, up, n, out);
}

void SiluMulRows(const float* gate_up, int64_t rows, int64_t width, float* out, Isa isa) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* gate = gate_up + r * 2 * width;
    SiluMul(gate, gate + width, width, out + r * width, isa);
  }
}

void Softmax(float* x, int64_t n) {
  float max = *std::max_element(x, x + n);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace tessera::kernels
