// The 8-bit float formats of FP8 checkpoints (OCP FP8): E4M3 "fn" (1 sign, 4 exponent bits
// with bias 7, 3 mantissa bits; no infinities, 0x7F/0xFF are NaN, largest finite 448) and E5M2
// (the upper byte of an IEEE half). DeepSeek-V3's release stores its linear weights as E4M3 in
// 128x128 blocks, each with a float scale (`<name>_scale_inv`) that multiplies it back.
// Thread-safe (stateless).
#ifndef TESSERA_ENGINE_SAFETENSORS_FP8_H_
#define TESSERA_ENGINE_SAFETENSORS_FP8_H_

#include <cstdint>

namespace tessera::engine {

inline constexpr float kFp8E4M3Max = 448.0f;

float Fp8E4M3ToFloat(uint8_t bits);
float Fp8E5M2ToFloat(uint8_t bits);

// The nearest E4M3 value to `value` (ties to an even mantissa), saturating to +-448; NaN
// stays NaN. As PyTorch's float8_e4m3fn conversion does for finite values in range.
uint8_t FloatToFp8E4M3(float value);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_SAFETENSORS_FP8_H_
