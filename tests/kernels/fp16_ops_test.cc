#include <immintrin.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/fp16.h"
#include "kernels/ops.h"

namespace tessera::kernels {
namespace {

TEST_CASE("Fp16: every fp16 value survives fp32 and back", "[kernels][fp16]") {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = Fp16ToFp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    REQUIRE(Fp32ToFp16(f) == h);
  }
}

__attribute__((target("f16c"))) uint16_t HardwareFp16(float f) {
  return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

TEST_CASE("Fp16: rounding agrees with the F16C instruction", "[kernels][fp16]") {
  if (!GetCpuFeatures().avx2) SUCCEED("no F16C on this CPU: the scalar round trip test still runs");
  if (!GetCpuFeatures().avx2) return;
  std::mt19937 rng(5);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    uint32_t b = bits(rng);
    float f;
    std::memcpy(&f, &b, 4);
    if (std::isnan(f)) continue;
    INFO("bits " << b);
    REQUIRE(Fp32ToFp16(f) == HardwareFp16(f));
  }
}

TEST_CASE("Bf16: conversion rounds to nearest even", "[kernels][fp16]") {
  CHECK(Bf16ToFp32(Fp32ToBf16(1.0f)) == 1.0f);
  CHECK(Fp32ToBf16(1.00390625f) == 0x3f80);  // Halfway: rounds to even (down).
  CHECK(Fp32ToBf16(1.01171875f) == 0x3f82);  // Halfway: rounds to even (up).
  CHECK(std::isnan(Bf16ToFp32(Fp32ToBf16(NAN))));
}

TEST_CASE("Ops: RmsNorm, RoPE, SiluMul and Softmax follow their formulas", "[kernels][ops]") {
  std::vector<float> x = {1, -2, 3, -4}, w = {1, 1, 2, 0.5f}, out(4);
  RmsNorm(x.data(), w.data(), 4, 0.0f, out.data());
  float rms = std::sqrt((1 + 4 + 9 + 16) / 4.0f);
  for (int i = 0; i < 4; ++i) CHECK(out[i] == Approx(x[i] / rms * w[i]));

  // RoPE: position 0 is the identity; rotations keep each pair's norm; pair i turns by
  // pos * base^(-2i/d).
  std::vector<float> head = {1, 0, 0, 1, 3, 4, 5, 6};
  std::vector<float> same = head;
  ApplyRope(same.data(), 1, 8, 8, 0, 10000.0f);
  CHECK(same == head);
  std::vector<float> turned = head;
  ApplyRope(turned.data(), 1, 8, 8, 3, 10000.0f);
  CHECK(turned[0] == Approx(std::cos(3.0f)));
  CHECK(turned[1] == Approx(std::sin(3.0f)));
  float theta1 = 3.0f * std::pow(10000.0f, -2.0f / 8);
  CHECK(turned[2] == Approx(-std::sin(theta1)));
  CHECK(std::hypot(turned[4], turned[5]) == Approx(5.0f));
  std::vector<float> partial = head;
  ApplyRope(partial.data(), 1, 8, 4, 3, 10000.0f);  // rope_dim < head_dim leaves the rest.
  CHECK(partial[4] == 3);
  CHECK(partial[7] == 6);

  std::vector<float> gate = {0, 1, -1}, up = {2, 2, 2}, h(3);
  SiluMul(gate.data(), up.data(), 3, h.data());
  CHECK(h[0] == 0);
  CHECK(h[1] == Approx(2 / (1 + std::exp(-1.0f))));
  CHECK(h[2] == Approx(-2 / (1 + std::exp(1.0f))));

  std::vector<float> logits = {1000, 1001, 999};
  Softmax(logits.data(), 3);
  CHECK(logits[0] + logits[1] + logits[2] == Approx(1.0f));
  CHECK(logits[1] > logits[0]);
  CHECK(logits[0] > logits[2]);
}

TEST_CASE("Ops: half-split RoPE is the adjacent-pair RoPE with the dimensions permuted",
          "[kernels][ops]") {
  // Element i of the half-split form plays the part of element 2i of the adjacent form, and
  // element i + d/2 that of 2i + 1.
  const int64_t heads = 3, head_dim = 16, rope_dim = 12;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> halves(heads * head_dim);
  for (float& v : halves) v = dist(rng);
  std::vector<float> adjacent(halves.size());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < rope_dim / 2; ++i) {
      adjacent[h * head_dim + 2 * i] = halves[h * head_dim + i];
      adjacent[h * head_dim + 2 * i + 1] = halves[h * head_dim + i + rope_dim / 2];
    }
    for (int64_t i = rope_dim; i < head_dim; ++i) adjacent[h * head_dim + i] = halves[h * head_dim + i];
  }
  const std::vector<float> before = halves;
  kernels::ApplyRopeHalves(halves.data(), heads, head_dim, rope_dim, 37, 10000.0f);
  kernels::ApplyRope(adjacent.data(), heads, head_dim, rope_dim, 37, 10000.0f);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < rope_dim / 2; ++i) {
      CHECK(halves[h * head_dim + i] == adjacent[h * head_dim + 2 * i]);
      CHECK(halves[h * head_dim + i + rope_dim / 2] == adjacent[h * head_dim + 2 * i + 1]);
    }
    for (int64_t i = rope_dim; i < head_dim; ++i) {
      CHECK(halves[h * head_dim + i] == before[h * head_dim + i]);  // Past rope_dim: untouched.
    }
  }
  CHECK(halves != before);
}

TEST_CASE("Ops: SiluMul agrees across ISAs", "[kernels][ops]") {
  std::mt19937 rng(8);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  const int n = 1000;  // Not a multiple of 16: the masked tail runs too.
  std::vector<float> gate(n), up(n), expected(n);
  for (int i = 0; i < n; ++i) {
    gate[i] = normal(rng);
    up[i] = normal(rng);
  }
  gate[0] = -100.0f;  // Far below the exp clamp.
  gate[1] = 90.0f;
  for (int i = 0; i < n; ++i) expected[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  for (Isa isa : SupportedIsas()) {
    std::vector<float> out(n);
    SiluMul(gate.data(), up.data(), n, out.data(), isa);
    for (int i = 0; i < n; ++i) {
      INFO("isa " << IsaName(isa) << " gate " << gate[i]);
      REQUIRE(out[i] == Approx(expected[i]).epsilon(1e-6).margin(1e-30));
    }
  }
}

}  // namespace
}  // namespace tessera::kernels
