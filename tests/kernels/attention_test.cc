#include "kernels/attention.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/fp16.h"

namespace tessera::kernels {
namespace {

// A small paged cache with scattered block ids, filled with random fp16 keys and values.
struct RandomCache {
  AttentionShape shape;
  std::vector<std::vector<uint16_t>> keys, values;  // Per block.
  std::vector<const uint16_t*> key_ptrs, value_ptrs;

  RandomCache(AttentionShape s, int positions, std::mt19937& rng) : shape(s) {
    std::normal_distribution<float> normal;
    int blocks = (positions + s.block_size - 1) / s.block_size;
    int64_t block_elems = int64_t{s.block_size} * s.num_kv_heads * s.head_dim;
    for (int b = 0; b < blocks; ++b) {
      keys.emplace_back(block_elems);
      values.emplace_back(block_elems);
      for (auto& k : keys.back()) k = Fp32ToFp16(normal(rng));
      for (auto& v : values.back()) v = Fp32ToFp16(normal(rng));
    }
    // Reverse the order so that logical block i is not physical block i.
    for (int b = blocks - 1; b >= 0; --b) {
      key_ptrs.push_back(keys[b].data());
      value_ptrs.push_back(values[b].data());
    }
  }
  PagedKv kv() const { return {key_ptrs.data(), value_ptrs.data()}; }
};

TEST_CASE("AttendTile: every ISA matches the one-head reference", "[kernels][attention]") {
  std::mt19937 rng(42);
  std::normal_distribution<float> normal;
  auto [block_size, heads, kv_heads, first_pos, tokens, head_dim, q_scale] =
      GENERATE(table<int, int, int, int, int, int, float>({
          {16, 9, 3, 0, 1, 64, 2.0f},     // First decode position.
          {16, 9, 3, 37, 1, 64, 2.0f},    // Decode inside a block.
          {16, 9, 3, 0, 40, 64, 2.0f},    // Prefill spanning blocks.
          {5, 4, 2, 11, 13, 64, 2.0f},    // Blocks smaller than the kernel's chunk.
          {64, 8, 8, 100, 16, 64, 2.0f},  // Blocks larger than the kernel's chunk, no grouping.
          {16, 9, 3, 20, 7, 64, 2.0f},    // Rows not a multiple of the kernel's row block.
          {16, 9, 3, 300, 40, 64, 12.0f}, // Peaked softmax: scores spread over tens of units.
          {16, 6, 2, 5, 30, 32, 2.0f},    // Other head sizes.
          {16, 6, 2, 50, 9, 128, 2.0f},
          {8, 4, 1, 3, 5, 48, 2.0f},      // A head size with no specialized kernel.
      }));
  AttentionShape shape{heads, kv_heads, head_dim, block_size,
                       1.0f / std::sqrt(static_cast<float>(head_dim))};
  RandomCache cache(shape, first_pos + tokens, rng);
  const int64_t q_stride = int64_t{heads} * shape.head_dim;
  std::vector<float> q(tokens * q_stride);
  for (float& v : q) v = normal(rng) * q_scale;

  std::vector<float> expected(tokens * q_stride);
  std::vector<float> scores(first_pos + tokens);
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      AttendOneHead(shape, cache.kv(), q.data() + t * q_stride + h * shape.head_dim, first_pos + t,
                    h, scores.data(), expected.data() + t * q_stride + h * shape.head_dim,
                    Isa::kScalar);
    }
  }
  for (Isa isa : SupportedIsas()) {
    INFO("isa " << IsaName(isa) << ", block " << block_size << ", first_pos " << first_pos
                << ", tokens " << tokens << ", head_dim " << head_dim);
    std::vector<float> out(tokens * q_stride, NAN);
    for (int h = 0; h < kv_heads; ++h) {
      AttendTile(shape, cache.kv(), q.data(), q_stride, first_pos, tokens, h, out.data(), q_stride,
                 isa);
    }
    double max_error = 0;
    for (size_t i = 0; i < out.size(); ++i)
      max_error = std::max(max_error, double(std::fabs(out[i] - expected[i])));
    // Same math in another order (online softmax): fp32 rounding only (values are O(1)).
    CHECK(max_error < 1e-5);
  }
}

}  // namespace
}  // namespace tessera::kernels
