#include "engine/safetensors/fp8.h"

#include <array>
#include <cmath>

#include "kernels/fp16.h"

namespace tessera::engine {
namespace {

// The 127 non-negative finite E4M3 values by code (0x00..0x7E), increasing with the code.
const std::array<float, 127>& PositiveE4M3() {
  static const std::array<float, 127> table = [] {
    std::array<float, 127> t{};
    for (int code = 0; code < 127; ++code) t[code] = Fp8E4M3ToFloat(static_cast<uint8_t>(code));
    return t;
  }();
  return table;
}

}  // namespace

float Fp8E4M3ToFloat(uint8_t bits) {
  const int exponent = (bits >> 3) & 0xF;
  const int mantissa = bits & 0x7;
  const float sign = (bits & 0x80) != 0 ? -1.0f : 1.0f;
  if (exponent == 0xF && mantissa == 0x7) return std::nanf("");
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -9);
  return sign * std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
}

float Fp8E5M2ToFloat(uint8_t bits) { return kernels::Fp16ToFp32(static_cast<uint16_t>(bits) << 8); }

uint8_t FloatToFp8E4M3(float value) {
  if (std::isnan(value)) return 0x7F;
  const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  const float magnitude = std::fabs(value);
  const std::array<float, 127>& table = PositiveE4M3();
  if (magnitude >= kFp8E4M3Max) return sign | 126;
  // The first code whose value is >= magnitude, then the nearer of it and the one below.
  int high = 0;
  while (table[high] < magnitude) ++high;
  if (high == 0 || table[high] == magnitude) return sign | static_cast<uint8_t>(high);
  const int low = high - 1;
  const float below = magnitude - table[low];
  const float above = table[high] - magnitude;
  int code = below < above ? low : high;
  if (below == above) code = (low % 2 == 0) ? low : high;  // Ties to the even mantissa.
  return sign | static_cast<uint8_t>(code);
}

}  // namespace tessera::engine
