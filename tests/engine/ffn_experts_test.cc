// Dense equivalence with real weights: the default model (SmolLM2-135M) with each FFN split
// into 8 experts of 192 (slices of gate, up and down), all selected with weight 1, generates
// the dense model's greedy text, and spreading those experts over an expert-parallel group of
// 2 or 4 ranks (threads here, each with its own Gloo connections over loopback, its own KV
// cache and its own prompt) changes no logit. This checks dispatch and combine end to end on
// real text.
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "comm/gloo_communicator.h"
#include "comm/local_key_value_store.h"
#include "engine/gguf/gguf_file.h"
#include "engine/models/model.h"
#include "engine/models/quantized_experts.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quantized_activations.h"
#include "tests/engine/model_fixture.h"

namespace tessera::engine {
namespace {

constexpr int32_t kExperts = 8;
constexpr int kDecodeSteps = 32;
constexpr int32_t kBlockSize = 16;

struct Generation {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;  // Per step.
};

// Greedy generation: the prompt in one step, then kDecodeSteps single-token steps.
absl::StatusOr<Generation> Greedy(Model& model, const std::vector<int32_t>& prompt) {
  const int32_t vocab = model.config().vocab_size;
  const int32_t positions = static_cast<int32_t>(prompt.size()) + kDecodeSteps + 1;
  const int32_t blocks = (positions + kBlockSize - 1) / kBlockSize;
  absl::StatusOr<std::unique_ptr<kvcache::PagedKvCache>> cache =
      kvcache::PagedKvCache::Create(KvShapeFor(model.config(), kBlockSize, blocks));
  if (!cache.ok()) return cache.status();
  std::vector<kvcache::BlockId> table(static_cast<size_t>(blocks));
  for (int32_t b = 0; b < blocks; ++b) table[b] = b;
  Generation out;
  std::vector<int32_t> sequence = prompt;
  int32_t done = 0;
  for (int step = 0; step <= kDecodeSteps; ++step) {
    SequenceStep s{.tokens = std::span<const int32_t>(sequence).subspan(done),
                   .start_pos = done,
                   .block_table = table};
    std::vector<float> logits(static_cast<size_t>(vocab));
    if (absl::Status st = model.Forward({&s, 1}, **cache, logits); !st.ok()) return st;
    done = static_cast<int32_t>(sequence.size());
    const int32_t next =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.tokens.push_back(next);
    out.logits.push_back(std::move(logits));
    sequence.push_back(next);
  }
  return out;
}

std::vector<std::vector<int32_t>> Prompts() {
  const Tokenizer& tokenizer = *testing::DefaultModel().tokenizer;
  std::vector<std::vector<int32_t>> prompts;
  for (const char* text :
       {"The capital of France is", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci",
        "Les fleurs du jardin s'ouvrent au printemps, et", "Once upon a time, a small robot"}) {
    prompts.push_back(tokenizer.Encode(text, /*parse_special=*/false));
  }
  return prompts;
}

// The largest difference on the reference's five best tokens, the ones generation picks from.
float MaxTop5Difference(const std::vector<float>& got, const std::vector<float>& want) {
  std::vector<int32_t> ids(want.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + 5, ids.end(),
                    [&](int32_t a, int32_t b) { return want[a] > want[b]; });
  float worst = 0.0f;
  for (int k = 0; k < 5; ++k) worst = std::max(worst, std::fabs(got[ids[k]] - want[ids[k]]));
  return worst;
}

float MaxDifference(const std::vector<float>& a, const std::vector<float>& b) {
  float worst = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

// The gap between the best and second-best logits.
float TopTwoGap(const std::vector<float>& logits) {
  std::vector<float> top(logits);
  std::partial_sort(top.begin(), top.begin() + 2, top.end(), std::greater<float>());
  return top[0] - top[1];
}

TEST_CASE("SplitDenseFfn: the experts' outputs add up to the dense feed-forward block",
          "[engine][moe]") {
  const auto file = GgufFile::Open(testing::DefaultModelPath());
  REQUIRE(file.ok());
  // Layers whose tensors have different quantization types (e.g. 0 and 3).
  const int layer = GENERATE(0, 3, 29);
  INFO("layer " << layer);
  const std::string p = absl::StrCat("blk.", layer, ".");
  const GgufTensor* gate = (*file)->FindTensor(p + "ffn_gate.weight");
  const GgufTensor* up = (*file)->FindTensor(p + "ffn_up.weight");
  const GgufTensor* down = (*file)->FindTensor(p + "ffn_down.weight");
  REQUIRE(gate != nullptr);
  REQUIRE(up != nullptr);
  REQUIRE(down != nullptr);
  const int64_t hidden = gate->shape[0], inter = gate->shape[1];
  constexpr int64_t kTokens = 3;
  std::vector<float> x(static_cast<size_t>(kTokens * hidden));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
  kernels::ThreadPool pool(2);

  // The dense block, as the llama model computes it.
  const kernels::WeightSource gate_up_sources[] = {{gate->type, gate->data, inter},
                                                   {up->type, up->data, inter}};
  auto gate_up = kernels::PackedMatrix::Pack(gate_up_sources, hidden);
  const kernels::WeightSource down_source[] = {{down->type, down->data, hidden}};
  auto down_packed = kernels::PackedMatrix::Pack(down_source, inter);
  REQUIRE(gate_up.ok());
  REQUIRE(down_packed.ok());
  kernels::QuantizedActivations q;
  q.Quantize(x.data(), kTokens, hidden, hidden);
  std::vector<float> h(static_cast<size_t>(kTokens * 2 * inter)), act(kTokens * inter);
  kernels::Matmul(*gate_up, q, h.data(), 2 * inter, pool);
  for (int64_t t = 0; t < kTokens; ++t) {
    kernels::SiluMul(h.data() + t * 2 * inter, h.data() + t * 2 * inter + inter, inter,
                     act.data() + t * inter);
  }
  q.Quantize(act.data(), kTokens, inter, inter);
  std::vector<float> dense(static_cast<size_t>(kTokens * hidden));
  kernels::Matmul(*down_packed, q, dense.data(), hidden, pool);

  const int32_t experts = GENERATE(1, 2, 8);
  INFO(experts << " experts");
  auto split = SplitDenseFfn(*gate, *up, *down, experts, 0, experts);
  REQUIRE(split.ok());
  QuantizedExperts block(static_cast<int32_t>(hidden), static_cast<int32_t>(inter / experts),
                         *std::move(split));
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < kTokens; ++t) {
    for (int32_t e = 0; e < experts; ++e) ids.push_back(e);
  }
  const std::vector<float> ones(ids.size(), 1.0f);
  std::vector<float> out(dense.size(), 0.0f);
  block.Forward(x.data(), kTokens, ids.data(), ones.data(), experts, out.data(), pool);
  float worst = 0.0f, scale = 0.0f;
  for (size_t i = 0; i < out.size(); ++i) {
    worst = std::max(worst, std::fabs(out[i] - dense[i]));
    scale = std::max(scale, std::fabs(dense[i]));
  }
  INFO("largest difference " << worst << " of values up to " << scale);
  CHECK(worst <= 1e-5f * scale);
}

TEST_CASE("FFN as 8 experts: the dense model's greedy tokens and logits", "[engine][moe]") {
  const auto file = GgufFile::Open(testing::DefaultModelPath());
  REQUIRE(file.ok());
  kernels::ThreadPool pool(2);
  auto dense = CreateModel(**file, {.pool = &pool});
  auto split = CreateModel(**file, {.pool = &pool, .ffn_experts = kExperts});
  REQUIRE(dense.ok());
  REQUIRE(split.ok());
  // Tolerances: the split regroups only the down projection's sums (8 partial dot products
  // of 192 instead of one of 1536; the block test above finds them equal to ~1e-7 of their
  // size). But activations are quantized to 8 bits before every matmul, so a last-bit change
  // can move a value across a rounding boundary, and over 30 layers that noise reaches about
  // one logit: the same bounds as against llama.cpp (llama_golden_test, docs/CORRECTNESS.md),
  // 1.5 on the top-5 logits, and a token may differ only where the top two logits are within
  // 0.6. Over the whole vocabulary (49,152 logits a step) the tail of that noise is wider, and
  // moves with unrelated rounding changes (a reordered attention kernel took it from 1.2 to
  // 1.8 on one prompt), so the bound there is twice as loose.
  constexpr float kTop5Tolerance = 1.5f;
  constexpr float kVocabularyTolerance = 3.0f;
  constexpr float kNearTie = 0.6f;
  int64_t computed = 0;  // Tokens the split model computed.
  for (const std::vector<int32_t>& prompt : Prompts()) {
    auto want = Greedy(**dense, prompt);
    auto got = Greedy(**split, prompt);
    REQUIRE(want.ok());
    REQUIRE(got.ok());
    float worst = 0.0f, worst_top5 = 0.0f;
    for (size_t s = 0; s < want->tokens.size(); ++s) {
      INFO("step " << s);
      worst = std::max(worst, MaxDifference(got->logits[s], want->logits[s]));
      worst_top5 = std::max(worst_top5, MaxTop5Difference(got->logits[s], want->logits[s]));
      if (got->tokens[s] != want->tokens[s]) {
        // Only a near-tie may flip; then the continuations differ and comparing stops.
        CHECK(TopTwoGap(want->logits[s]) < kNearTie);
        break;
      }
    }
    INFO("largest logit difference " << worst << ", on the top 5 " << worst_top5);
    CHECK(worst_top5 < kTop5Tolerance);
    CHECK(worst < kVocabularyTolerance);
    CHECK(worst > 0.0f);  // Regrouped sums do round differently: this is the split path.
    computed += static_cast<int64_t>(prompt.size()) + kDecodeSteps;
  }
  // Every token computed went to all 8 experts of every layer; the dense model has none.
  CHECK((*dense)->expert_token_counts().layers.empty());
  const ExpertTokenCounts counts = (*split)->expert_token_counts();
  CHECK(counts.num_experts == kExperts);
  REQUIRE(counts.layers.size() == static_cast<size_t>((*split)->config().num_layers));
  for (size_t i = 0; i < counts.tokens.size(); ++i) {
    INFO("layer " << counts.layers[i / kExperts] << " expert " << i % kExperts);
    CHECK(counts.tokens[i] == computed);
  }
}

TEST_CASE("FFN experts over EP = 2 and 4 ranks: every rank's logits as with no group",
          "[engine][moe][ep]") {
  const auto file = GgufFile::Open(testing::DefaultModelPath());
  REQUIRE(file.ok());
  const std::vector<std::vector<int32_t>> prompts = Prompts();
  std::vector<Generation> expected;
  {
    kernels::ThreadPool pool(1);
    auto alone = CreateModel(**file, {.pool = &pool, .ffn_experts = kExperts});
    REQUIRE(alone.ok());
    for (const auto& prompt : prompts) {
      auto g = Greedy(**alone, prompt);
      REQUIRE(g.ok());
      expected.push_back(*std::move(g));
    }
  }
  const int ranks = GENERATE(2, 4);
  INFO("EP = " << ranks);
  comm::LocalKeyValueStore store;
  const std::string group = absl::StrCat("ffn-experts-", ranks);
  std::vector<absl::StatusOr<Generation>> results(ranks, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < ranks; ++rank) {
    threads.emplace_back([&, rank] {
      auto comm = comm::GlooCommunicator::Connect(store, group, rank, ranks, {});
      if (!comm.ok()) {
        results[rank] = comm.status();
        return;
      }
      kernels::ThreadPool pool(1);
      auto model = CreateModel(
          **file, {.pool = &pool, .expert_group = comm->get(), .ffn_experts = kExperts});
      if (!model.ok()) {
        results[rank] = model.status();
        return;
      }
      // Data-parallel attention: each rank its own prompt, all stepping together.
      results[rank] = Greedy(**model, prompts[static_cast<size_t>(rank) % prompts.size()]);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int rank = 0; rank < ranks; ++rank) {
    INFO("rank " << rank);
    REQUIRE(results[rank].ok());
    const Generation& want = expected[static_cast<size_t>(rank) % prompts.size()];
    CHECK(results[rank]->tokens == want.tokens);
    float worst = 0.0f;
    for (size_t s = 0; s < want.logits.size(); ++s) {
      worst = std::max(worst, MaxDifference(results[rank]->logits[s], want.logits[s]));
    }
    CHECK(worst <= 1e-4f);
  }
}

TEST_CASE("FFN experts: sizes that do not split into whole blocks are refused by name",
          "[engine][moe]") {
  const auto file = GgufFile::Open(testing::DefaultModelPath());
  REQUIRE(file.ok());
  kernels::ThreadPool pool(1);
  // 1536 / 16 = 96 is 3 blocks, fine; 1536 / 64 = 24 is not a whole block; 7 does not divide.
  for (int32_t experts : {7, 64}) {
    auto model = CreateModel(**file, {.pool = &pool, .ffn_experts = experts});
    REQUIRE_FALSE(model.ok());
    CHECK(model.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(model.status().message()),
               Catch::Contains("ffn_gate.weight") && Catch::Contains("does not split"));
  }
  comm::LocalKeyValueStore store;
  auto comm = comm::GlooCommunicator::Connect(store, "dense-without-experts", 0, 1, {});
  REQUIRE(comm.ok());
  auto model = CreateModel(**file, {.pool = &pool, .expert_group = comm->get()});
  REQUIRE_FALSE(model.ok());
  CHECK_THAT(std::string(model.status().message()), Catch::Contains("ffn_experts"));
}

}  // namespace
}  // namespace tessera::engine
