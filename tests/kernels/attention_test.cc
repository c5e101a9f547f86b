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
  auto [block_size, heads, kv_heads, first_pos, tokens] = GENERATE(table<int, int, int, int, int>({
      {16, 9, 3, 0, 1},     // First decode position.
      {16, 9, 3, 37, 1},    // Decode inside a block.
      {16, 9, 3, 0, 40},    // Prefill spanning blocks.
      {5, 4, 2, 11, 13},    // Blocks smaller than the kernel's chunk.
      {64, 8, 8, 100, 16},  // Blocks larger than the kernel's chunk, no grouping.
  }));
  AttentionShape shape{heads, kv_heads, 64, block_size, 0.125f};
  RandomCache cache(shape, first_pos + tokens, rng);
  const int64_t q_stride = int64_t{heads} * shape.head_dim;
  std::vector<float> q(tokens * q_stride);
  for (float& v : q) v = normal(rng) * 2.0f;

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
                << ", tokens " << tokens);
    std::vector<float> out(tokens * q_stride, NAN);
    for (int h = 0; h < kv_heads; ++h) {
      AttendTile(shape, cache.kv(), q.data(), q_stride, first_pos, tokens, h, out.data(), q_stride,
                 isa);
    }
    double max_error = 0;
    for (size_t i = 0; i < out.size(); ++i)
      max_error = std::max(max_error, double(std::fabs(out[i] - expected[i])));
    // Same math in another order (online softmax): fp32 rounding only.
    CHECK(max_error < 1e-4);
  }
}

}  // namespace
}  // namespace tessera::kernels
