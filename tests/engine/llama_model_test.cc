#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <vector>

#include "engine/models/model.h"
#include "tests/engine/model_fixture.h"

namespace tessera::engine {
namespace {

using kvcache::BlockId;

std::vector<int32_t> Tokens(int n, int seed) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = 300 + (seed * 7919 + i * 104729) % 40000;
  return t;
}

std::vector<BlockId> Range(int first, int count) {
  std::vector<BlockId> ids(count);
  std::iota(ids.begin(), ids.end(), first);
  return ids;
}

float MaxDifference(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

struct Harness {
  Model& model = *testing::DefaultModel().model;
  const int32_t vocab = model.config().vocab_size;
  std::unique_ptr<kvcache::PagedKvCache> cache;
  explicit Harness(int block_size = 16, int blocks = 64)
      : cache(
            kvcache::PagedKvCache::Create(KvShapeFor(model.config(), block_size, blocks)).value()) {
  }

  std::vector<float> Run(std::vector<SequenceStep> batch) {
    int wanted = 0;
    for (auto& s : batch) wanted += s.want_logits;
    std::vector<float> logits(static_cast<size_t>(wanted) * vocab);
    REQUIRE(model.Forward(batch, *cache, logits).ok());
    return logits;
  }
};

TEST_CASE("Llama: a mixed batch gives each sequence the logits it gets alone", "[engine][model]") {
  // A: 20-token prompt. B: 7-token prompt then one decode step. C: 33-token prompt in blocks
  // taken out of order.
  std::vector<int32_t> a = Tokens(20, 1), b = Tokens(8, 2), c = Tokens(33, 3);
  std::vector<BlockId> a_blocks = Range(0, 2), b_blocks = Range(2, 1), c_blocks = {9, 4, 7};

  Harness alone;
  std::vector<float> a_alone = alone.Run({{a, 0, a_blocks, true}});
  alone.Run({{std::span(b).first(7), 0, b_blocks, false}});
  std::vector<float> b_alone = alone.Run({{std::span(b).subspan(7), 7, b_blocks, true}});
  std::vector<float> c_alone = alone.Run({{c, 0, c_blocks, true}});

  Harness together;
  together.Run({{std::span(b).first(7), 0, b_blocks, false}});
  std::vector<float> all = together.Run({{a, 0, a_blocks, true},
                                         {std::span(b).subspan(7), 7, b_blocks, true},
                                         {c, 0, c_blocks, true}});
  const size_t v = alone.vocab;
  // Every row's arithmetic is independent of the other rows: results are identical.
  CHECK(MaxDifference(all.data(), a_alone.data(), v) == 0.0f);
  CHECK(MaxDifference(all.data() + v, b_alone.data(), v) == 0.0f);
  CHECK(MaxDifference(all.data() + 2 * v, c_alone.data(), v) == 0.0f);
}

TEST_CASE("Llama: chunked prefill and other block sizes give the same logits", "[engine][model]") {
  std::vector<int32_t> prompt = Tokens(45, 4);
  Harness whole;
  std::vector<float> expected = whole.Run({{prompt, 0, Range(0, 3), true}});

  Harness chunked;
  std::vector<BlockId> blocks = {5, 1, 3};
  chunked.Run({{std::span(prompt).first(16), 0, blocks, false}});
  chunked.Run({{std::span(prompt).subspan(16, 10), 16, blocks, false}});
  std::vector<float> got = chunked.Run({{std::span(prompt).subspan(26), 26, blocks, true}});
  // Attention walks the cache in other chunks, so fp32 sums are ordered differently.
  CHECK(MaxDifference(got.data(), expected.data(), whole.vocab) < 1e-3f);

  Harness small_blocks(5, 16);
  std::vector<float> small = small_blocks.Run({{prompt, 0, Range(0, 9), true}});
  CHECK(MaxDifference(small.data(), expected.data(), whole.vocab) < 1e-3f);
}

TEST_CASE("Llama: bad steps are rejected naming what is wrong, and change nothing",
          "[engine][model]") {
  Harness h;
  std::vector<float> logits(h.vocab);
  std::vector<int32_t> bad_token = {1, 2, 49152};
  std::vector<BlockId> blocks = {0};
  auto status = h.model.Forward({{{bad_token, 0, blocks, true}}}, *h.cache, logits);
  CHECK(absl::IsInvalidArgument(status));
  CHECK(status.message().find("token 2 has id 49152") != std::string::npos);

  std::vector<int32_t> tokens = Tokens(20, 5);
  status = h.model.Forward({{{tokens, 0, blocks, true}}}, *h.cache, logits);
  CHECK(status.message().find("too few for 20 positions") != std::string::npos);

  std::vector<BlockId> out_of_range = {0, 64};
  status = h.model.Forward({{{tokens, 0, out_of_range, true}}}, *h.cache, logits);
  CHECK(status.message().find("names KV block 64") != std::string::npos);

  status = h.model.Forward({{{tokens, 8190, Range(0, 64), true}}}, *h.cache, logits);
  CHECK(status.message().find("outside the context") != std::string::npos);

  std::vector<float> small(10);
  status = h.model.Forward({{{tokens, 0, Range(0, 2), true}}}, *h.cache, small);
  CHECK(status.message().find("logits buffer") != std::string::npos);
}

}  // namespace
}  // namespace tessera::engine
