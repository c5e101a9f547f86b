// The rotary embedding a Hugging Face config asks for: plain RoPE, or YaRN (DeepSeek-V3's and
// Qwen3's long-context scaling), read from `rope_scaling` or, in newer configs,
// `rope_parameters`. The frequencies and the magnitude on cos and sin are computed as
// transformers' _compute_yarn_parameters computes them, in fp32 where it uses fp32.
// Thread-safe (pure functions).
#ifndef TESSERA_ENGINE_MODELS_ROPE_SCALING_H_
#define TESSERA_ENGINE_MODELS_ROPE_SCALING_H_

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace tessera::engine {

struct RopeScaling {
  bool yarn = false;
  double factor = 1.0;    // YaRN's context extension factor.
  double mscale_all_dim = 0.0;  // 0 when the config has none.
  std::vector<float> inv_freq;  // rope_dim / 2 frequencies: pair i rotates by pos * inv_freq[i].
  float magnitude = 1.0f;       // On cos and sin (transformers' "attention_factor").
};

// rope_dim: the rotated dimensions per head; base: rope_theta (a rope_theta inside
// rope_parameters wins). InvalidArgument names a bad field; Unimplemented a rope type other
// than default and yarn.
absl::StatusOr<RopeScaling> ReadRopeScaling(const nlohmann::json& config, int64_t rope_dim,
                                            double base, const std::string& config_path);

// YaRN's attention temperature term: 0.1 * mscale * ln(scale) + 1, or 1 when scale <= 1.
double YarnMscale(double scale, double mscale);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_ROPE_SCALING_H_
