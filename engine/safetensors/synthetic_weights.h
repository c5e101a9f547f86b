// Deterministic pseudo-random weights, for checkpoints that cannot be downloaded here (the MoE
// architectures' tests and benchmarks). A tensor's values depend only on the seed, its name
// and the element index, through a generator simple enough to reimplement exactly elsewhere:
// scripts/reference/make_moe_references.py computes the very same values with numpy, loads
// them into Hugging Face transformers' model, and saves its logits as the reference.
//
//   base  = mix(seed ^ fnv1a64(name))
//   z_i   = mix(base + (i + 1) * 0x9E3779B97F4A7C15)       (64-bit wrap-around)
//   u_i   = (z_i >> 40) / 2^24                               (exact in float)
//   w_i   = float(offset + (2 u_i - 1) * scale)              (computed in double)
//           (times row_scales[row of i] inside the parentheses' second term, when given)
//
// where mix is SplitMix64's finalizer.
// Thread-safety: stateless functions.
#ifndef TESSERA_ENGINE_SAFETENSORS_SYNTHETIC_WEIGHTS_H_
#define TESSERA_ENGINE_SAFETENSORS_SYNTHETIC_WEIGHTS_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tessera::engine {

struct SyntheticTensor {
  std::string name;
  std::vector<int64_t> shape;
  double scale = 1.0;   // Half-width of the uniform distribution.
  double offset = 0.0;  // Its centre (e.g. 1 for norm weights).
  // Optional: a further factor on the half-width per row (first dimension), e.g. to make a
  // few experts' router rows stronger so routing is skewed as in real models. Empty: 1.
  std::vector<double> row_scales;
  // When > 0 (2-D tensors only), the file stores the tensor as DeepSeek-V3's FP8 release does:
  // F8_E4M3 values in fp8_block x fp8_block blocks, each block divided by its scale (its
  // largest magnitude / 448, in float), with the scales in the F32 tensor `<name>_scale_inv`.
  int32_t fp8_block = 0;
};

uint64_t Fnv1a64(absl::string_view bytes);

// Fills `out` with elements [first, first + out.size()) of the tensor.
void SyntheticValues(uint64_t seed, const SyntheticTensor& tensor, int64_t first,
                     std::span<float> out);

// Writes a safetensors file holding every tensor as F32 (or FP8 with block scales, see
// SyntheticTensor::fp8_block).
absl::Status WriteSyntheticSafetensors(const std::string& path, uint64_t seed,
                                       std::span<const SyntheticTensor> tensors);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_SAFETENSORS_SYNTHETIC_WEIGHTS_H_
