#include "kernels/matmul.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "kernels/dequantize.h"
#include "kernels/fp16.h"
#include "kernels/matmul_f32.h"
#include "kernels/packed_matrix.h"
#include "kernels/quantized_activations.h"
#include "kernels/thread_pool.h"

namespace tessera::kernels {
namespace {

// Random weights of `type` in GGUF's block layout.
std::vector<uint8_t> RandomWeights(TensorType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  const int64_t blocks = rows * cols / kQuantBlock;
  std::vector<uint8_t> data(RowBytes(type, cols) * rows);
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* p = data.data() + b * GetTensorTypeInfo(type).block_bytes;
    if (type == TensorType::kQ4_0) {
      BlockQ4_0 blk{Fp32ToFp16(scale(rng)), {}};
      for (auto& q : blk.qs) q = static_cast<uint8_t>(byte(rng));
      std::memcpy(p, &blk, sizeof(blk));
    } else if (type == TensorType::kQ4_1) {
      BlockQ4_1 blk{Fp32ToFp16(scale(rng)), Fp32ToFp16(-8 * scale(rng)), {}};
      for (auto& q : blk.qs) q = static_cast<uint8_t>(byte(rng));
      std::memcpy(p, &blk, sizeof(blk));
    } else {
      BlockQ8_0 blk{Fp32ToFp16(scale(rng)), {}};
      for (auto& q : blk.qs) q = static_cast<int8_t>(byte(rng) - 128);
      std::memcpy(p, &blk, sizeof(blk));
    }
  }
  return data;
}

TEST_CASE("MatmulF32: matches a double-precision reference for any shape and thread count",
          "[kernels][matmul]") {
  const int threads = GENERATE(1, 3);
  ThreadPool pool(threads);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto [rows, cols, tokens] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                                    {17, 9, 3}, {64, 256, 11}, {5, 1000, 20}}) {
    std::vector<float> w(rows * cols), x(tokens * cols);
    for (float& v : w) v = dist(rng);
    for (float& v : x) v = dist(rng);
    const int64_t ld = rows + 3;  // Output rows wider than the matrix.
    std::vector<float> out(tokens * ld, 123.0f);
    MatmulF32(w.data(), rows, cols, x.data(), tokens, out.data(), ld, pool);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        double expected = 0;
        for (int64_t k = 0; k < cols; ++k) expected += double{w[r * cols + k]} * x[t * cols + k];
        REQUIRE(out[t * ld + r] == Approx(expected).margin(1e-4 * std::sqrt(double(cols))));
      }
      for (int64_t r = rows; r < ld; ++r) CHECK(out[t * ld + r] == 123.0f);  // Untouched.
    }
  }
}

struct Tolerance {
  double margin;
  double epsilon;
};

// Runs w x qa on every ISA this CPU has, into an output wider than w.rows(), and checks each
// value against the scalar path's and against `exact` (tokens x rows, in double), and that the
// extra columns stay untouched.
void CheckEveryIsa(const PackedMatrix& w, const QuantizedActivations& qa,
                   const std::vector<double>& exact, Tolerance vs_scalar, Tolerance vs_exact,
                   absl::string_view type) {
  const int64_t rows = w.rows(), tokens = qa.tokens();
  ThreadPool pool(2);
  std::vector<float> reference(tokens * rows);
  Matmul(w, qa, reference.data(), rows, pool, Isa::kScalar);
  for (Isa isa : SupportedIsas()) {
    std::vector<float> out(tokens * (rows + 3), -1.0f);
    Matmul(w, qa, out.data(), rows + 3, pool, isa);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        INFO("isa " << IsaName(isa) << " type " << type << " rows " << rows << " cols "
                    << w.cols() << " token " << t << " row " << r);
        const float got = out[t * (rows + 3) + r];
        REQUIRE(got == Approx(reference[t * rows + r])
                           .margin(vs_scalar.margin)
                           .epsilon(vs_scalar.epsilon));
        REQUIRE(got == Approx(exact[t * rows + r]).margin(vs_exact.margin).epsilon(vs_exact.epsilon));
      }
      for (int64_t r = rows; r < rows + 3; ++r) REQUIRE(out[t * (rows + 3) + r] == -1.0f);
    }
  }
}

TEST_CASE("PackedMatrix: packing keeps every weight exactly", "[kernels][matmul]") {
  std::mt19937 rng(1);
  for (TensorType type : {TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ8_0}) {
    const int64_t rows = 37, cols = 96;
    std::vector<uint8_t> data = RandomWeights(type, rows, cols, rng);
    WeightSource source{type, data, rows};
    PackedMatrix packed = PackedMatrix::Pack({&source, 1}, cols).value();
    CHECK(packed.rows() == rows);
    CHECK(packed.row_groups() == 3);
    std::vector<float> expected(cols), actual(cols);
    for (int64_t r = 0; r < rows; ++r) {
      DequantizeRow(type, data.data() + r * RowBytes(type, cols), cols, expected.data());
      packed.DequantizeRow(r, actual.data());
      INFO("type " << GetTensorTypeInfo(type).name << " row " << r);
      REQUIRE(actual == expected);
    }
  }
}

TEST_CASE("PackedMatrix: bad sources are rejected with the reason", "[kernels][matmul]") {
  std::vector<uint8_t> data(20 * 2);
  WeightSource ok{TensorType::kQ4_1, data, 2};
  WeightSource short_source{TensorType::kQ4_1, std::span<const uint8_t>(data).first(20), 2};
  std::vector<uint8_t> floats(32 * 4);
  WeightSource float_source{TensorType::kF32, floats, 1};
  WeightSource byte_source{TensorType::kQ8_0, data, 1};
  CHECK(PackedMatrix::Pack({&ok, 1}, 33).status().message().find("multiple of 32") !=
        std::string::npos);
  CHECK(PackedMatrix::Pack({&short_source, 1}, 32).status().message().find("holds 20 bytes") !=
        std::string::npos);
  WeightSource quantized_and_float[] = {ok, float_source};
  CHECK(PackedMatrix::Pack(quantized_and_float, 32).status().message().find("type F32") !=
        std::string::npos);
  WeightSource mixed[] = {ok, byte_source};
  CHECK(PackedMatrix::Pack(mixed, 32).status().message().find("source 1") != std::string::npos);
}

TEST_CASE("QuantizedActivations: every ISA quantizes identically", "[kernels][matmul]") {
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  const int64_t tokens = 5, cols = 256;
  std::vector<float> x(tokens * cols);
  for (float& v : x) v = normal(rng) * 3;
  x[7] = 0;
  std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // An all-zero block.
  QuantizedActivations reference;
  reference.Quantize(x.data(), tokens, cols, cols, Isa::kScalar);
  for (Isa isa : SupportedIsas()) {
    QuantizedActivations qa;
    qa.Quantize(x.data(), tokens, cols, cols, isa);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
        INFO("isa " << IsaName(isa) << " token " << t << " block " << b);
        const ActivationBlock& a = qa.row(t)[b];
        const ActivationBlock& e = reference.row(t)[b];
        REQUIRE(a.d == e.d);
        REQUIRE(a.s == e.s);
        REQUIRE(a.sum == e.sum);
        REQUIRE(std::memcmp(a.q, e.q, kQuantBlock) == 0);
      }
    }
  }
  // Quantization error is at most half a step per element, plus the scale's rounding to fp16
  // (relative 2^-11) over up to 127 steps.
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t k = 0; k < cols; ++k) {
      const ActivationBlock& a = reference.row(t)[k / kQuantBlock];
      CHECK(std::fabs(a.d * a.q[k % kQuantBlock] - x[t * cols + k]) <=
            a.d * (0.5f + 127.0f / 2048) + 1e-6f);
    }
  }
}

TEST_CASE("Matmul: every ISA matches the scalar reference and the float product",
          "[kernels][matmul]") {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  auto type = GENERATE(TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ8_0);
  auto [rows, cols, tokens] = GENERATE(table<int64_t, int64_t, int64_t>(
      {{16, 32, 1}, {37, 64, 3}, {96, 576, 1}, {50, 192, 7}, {160, 96, 9}}));
  std::vector<uint8_t> data = RandomWeights(type, rows, cols, rng);
  WeightSource source{type, data, rows};
  PackedMatrix w = PackedMatrix::Pack({&source, 1}, cols).value();
  std::vector<float> x(tokens * cols);
  for (float& v : x) v = normal(rng);
  QuantizedActivations qa;
  qa.Quantize(x.data(), tokens, cols, cols, Isa::kScalar);

  // Exact product of the dequantized weights and dequantized activations, in double.
  std::vector<double> exact(tokens * rows);
  std::vector<float> wrow(cols);
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRow(type, data.data() + r * RowBytes(type, cols), cols, wrow.data());
    for (int64_t t = 0; t < tokens; ++t) {
      double sum = 0;
      for (int64_t k = 0; k < cols; ++k) {
        const ActivationBlock& a = qa.row(t)[k / kQuantBlock];
        sum += double(wrow[k]) * a.d * a.q[k % kQuantBlock];
      }
      exact[t * rows + r] = sum;
    }
  }
  // The offset term uses s at fp16 precision (as GGUF's Q8_1 does): bounded error.
  CheckEveryIsa(w, qa, exact, {1e-4, 1e-5}, {2e-2, std::numeric_limits<float>::epsilon() * 100},
                GetTensorTypeInfo(type).name);
}

// Random unquantized weights of `type` (F32, F16 or BF16), and the same values as floats.
std::vector<uint8_t> RandomFloatWeights(TensorType type, int64_t count, std::mt19937& rng,
                                        std::vector<float>* values) {
  std::normal_distribution<float> normal(0.0f, 0.05f);
  const int64_t width = GetTensorTypeInfo(type).block_bytes;
  std::vector<uint8_t> data(count * width);
  values->resize(count);
  for (int64_t i = 0; i < count; ++i) {
    float v = normal(rng);
    if (type == TensorType::kF32) {
      std::memcpy(data.data() + 4 * i, &v, 4);
    } else {
      const uint16_t h = type == TensorType::kF16 ? Fp32ToFp16(v) : Fp32ToBf16(v);
      std::memcpy(data.data() + 2 * i, &h, 2);
      v = type == TensorType::kF16 ? Fp16ToFp32(h) : Bf16ToFp32(h);
    }
    (*values)[i] = v;
  }
  return data;
}

TEST_CASE("PackedMatrix: unquantized weights pack as their bf16 rounding", "[kernels][matmul]") {
  std::mt19937 rng(4);
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16}) {
    const int64_t rows = 21, cols = 64;
    std::vector<float> values;
    std::vector<uint8_t> data = RandomFloatWeights(type, rows * cols, rng, &values);
    WeightSource source{type, data, rows};
    PackedMatrix packed = PackedMatrix::Pack({&source, 1}, cols).value();
    CHECK(packed.format() == PackedFormat::kBf16);
    std::vector<float> actual(cols);
    for (int64_t r = 0; r < rows; ++r) {
      packed.DequantizeRow(r, actual.data());
      for (int64_t k = 0; k < cols; ++k) {
        INFO("type " << GetTensorTypeInfo(type).name << " row " << r << " column " << k);
        REQUIRE(actual[k] == Bf16ToFp32(Fp32ToBf16(values[r * cols + k])));
      }
    }
  }
}

TEST_CASE("Matmul: bf16 matrices on every ISA match the scalar reference and the exact product",
          "[kernels][matmul]") {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  auto type = GENERATE(TensorType::kF32, TensorType::kF16, TensorType::kBF16);
  auto [rows, cols, tokens] = GENERATE(table<int64_t, int64_t, int64_t>(
      {{16, 32, 1}, {37, 64, 3}, {96, 576, 1}, {50, 192, 9}, {160, 96, 17}}));
  std::vector<float> values;
  std::vector<uint8_t> data = RandomFloatWeights(type, rows * cols, rng, &values);
  WeightSource source{type, data, rows};
  PackedMatrix w = PackedMatrix::Pack({&source, 1}, cols).value();
  std::vector<float> x(tokens * cols);
  for (float& v : x) v = normal(rng);
  QuantizedActivations qa;
  qa.set_keep_bf16(true);
  qa.Quantize(x.data(), tokens, cols, cols, Isa::kScalar);

  // The exact product of the bf16-rounded weights and activations, in double.
  std::vector<double> exact(tokens * rows);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t t = 0; t < tokens; ++t) {
      double sum = 0;
      for (int64_t k = 0; k < cols; ++k) {
        sum += double(Bf16ToFp32(Fp32ToBf16(values[r * cols + k]))) *
               Bf16ToFp32(qa.bf16_row(t)[k]);
      }
      exact[t * rows + r] = sum;
      REQUIRE(Bf16ToFp32(qa.bf16_row(t)[r % cols]) ==
              Bf16ToFp32(Fp32ToBf16(x[t * cols + r % cols])));
    }
  }
  // Products of bf16 values are exact in fp32; only the fp32 sums round, and the paths add in
  // different orders.
  CheckEveryIsa(w, qa, exact, {1e-5, 1e-5}, {1e-5, 1e-5}, GetTensorTypeInfo(type).name);
}

}  // namespace
}  // namespace tessera::kernels
