// The elementwise and normalization operators of transformer layers, in fp32. They cost little
// next to the matmuls and attention, so they are plain loops the compiler vectorizes.
// Thread-safe (pure functions over caller-owned buffers).
#ifndef TESSERA_KERNELS_OPS_H_
#define TESSERA_KERNELS_OPS_H_

#include <cstdint>
#include <vector>

#include "kernels/cpu_features.h"

namespace tessera::kernels {

// out = x / rms(x) * weight, over n elements (out may alias x).
void RmsNorm(const float* x, const float* weight, int64_t n, float epsilon, float* out);

// Rotary position embedding, adjacent-pair form (GGUF's llama layout): for each head of
// head_dim elements, pair (2i, 2i+1) rotates by pos * base^(-2i / rope_dim); dimensions past
// rope_dim are left as they are.
void ApplyRope(float* x, int64_t num_heads, int64_t head_dim, int64_t rope_dim, int64_t pos,
               float base);

// The same rotation in the half-split form of Hugging Face checkpoints (GPT-NeoX style): for
// each head, element i pairs with element i + rope_dim / 2.
void ApplyRopeHalves(float* x, int64_t num_heads, int64_t head_dim, int64_t rope_dim,
                     int64_t pos, float base);

// base^(-2i / rope_dim) for each of the rope_dim / 2 pairs: the frequencies the forms above
// use, for callers that compute them once rather than per call.
std::vector<float> RopeFrequencies(int64_t rope_dim, float base);

// Both forms with the rope_dim / 2 inverse frequencies given (pair i rotates by
// pos * inv_freq[i]) and cos and sin multiplied by `magnitude`: for scaled variants such as
// YaRN, whose frequencies are not base^(-2i / rope_dim).
void ApplyRope(float* x, int64_t num_heads, int64_t head_dim, int64_t rope_dim, int64_t pos,
               const float* inv_freq, float magnitude);
void ApplyRopeHalves(float* x, int64_t num_heads, int64_t head_dim, int64_t rope_dim,
                     int64_t pos, const float* inv_freq, float magnitude);

// out[i] = silu(gate[i]) * up[i] (vectorized per ISA, like the matmuls).
void SiluMul(const float* gate, const float* up, int64_t n, float* out, Isa isa = DefaultIsa());

// SiluMul for `rows` rows of a fused gate/up projection: row r holds `width` gate values then
// `width` up values; its `width` results go to out + r * width.
void SiluMulRows(const float* gate_up, int64_t rows, int64_t width, float* out,
                 Isa isa = DefaultIsa());

// In-place softmax over n elements.
void Softmax(float* x, int64_t n);

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_OPS_H_
