// The model against an independent implementation: llama.cpp (through llama-cpp-python) on
// the same GGUF file. scripts/reference/make_goldens.py wrote, for each prompt, llama.cpp's
// greedy tokens and top-5 logits over 64 steps. Here the model is fed the same prompt and the
// same tokens (teacher forcing, so every step is compared in the same context) and must
//   - give each of llama.cpp's top-5 tokens a logit within kLogitTolerance of llama.cpp's, and
//   - pick llama.cpp's greedy token at each of the first 32 steps, unless llama.cpp's own top
//     two are closer than kNearTie: then either choice is within rounding, and the prompt is
//     not compared further (reported with WARN).
//
// Why these tolerances: both runtimes quantize activations to 8 bits per 32 values before
// every matmul and keep the KV cache in fp16, but round at different points; over 30 layers
// that moves logits by up to a few tenths. llama.cpp's own two attention paths (flash
// attention on and off) differ from each other by as much on this model, and both differ from
// an exact fp64 forward pass of the same weights by ~0.1-0.3. docs/CORRECTNESS.md has the
// measured distributions.
#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <numeric>
#include <vector>

#include "engine/models/model.h"
#include "nlohmann/json.hpp"
#include "tests/engine/model_fixture.h"
#include "tests/test_paths.h"

namespace tessera::engine {
namespace {

constexpr float kLogitTolerance = 0.75f;
constexpr float kNearTie = 0.5f;
constexpr int kGreedySteps = 32;

TEST_CASE("Llama: logits and greedy tokens agree with llama.cpp on every golden prompt",
          "[engine][model][golden]") {
  std::ifstream in(testing::TestDataPath("goldens/smollm2_q4_1.json"));
  REQUIRE(in.good());
  nlohmann::json golden = nlohmann::json::parse(in);
  REQUIRE(golden["prompts"].size() >= 12);

  Model& model = *testing::DefaultModel().model;
  const int32_t vocab = model.config().vocab_size;
  constexpr int kBlockSize = 16;
  auto cache = kvcache::PagedKvCache::Create(KvShapeFor(model.config(), kBlockSize, 160)).value();
  std::vector<kvcache::BlockId> blocks(160);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::vector<float> logits(vocab);

  float worst_difference = 0;
  int compared_prompts = 0, greedy_checked = 0;
  for (const auto& prompt : golden["prompts"]) {
    const std::string name = prompt["name"];
    std::vector<int32_t> tokens = prompt["prompt_ids"].get<std::vector<int32_t>>();
    REQUIRE(model.Forward({{{tokens, 0, blocks, true}}}, *cache, logits).ok());
    bool greedy_stopped = false;
    int step_index = 0;
    for (const auto& step : prompt["steps"]) {
      const int32_t reference_token = step["token"];
      const auto& top5 = step["top5"];
      for (const auto& entry : top5) {
        const int32_t id = entry[0];
        const float reference_logit = entry[1];
        const float difference = std::fabs(logits[id] - reference_logit);
        worst_difference = std::max(worst_difference, difference);
        INFO("prompt " << name << ", step " << step_index << ", token " << id << ": ours "
                       << logits[id] << ", llama.cpp " << reference_logit);
        CHECK(difference <= kLogitTolerance);
      }
      if (step_index < kGreedySteps && !greedy_stopped) {
        const float gap = float(top5[0][1]) - float(top5[1][1]);
        if (gap < kNearTie) {
          WARN("prompt " << name << ": near-tie at step " << step_index
                         << " (llama.cpp's top two differ by " << gap
                         << "); greedy tokens not compared further");
          greedy_stopped = true;
        } else {
          const int32_t ours =
              static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
          INFO("prompt " << name << ", step " << step_index);
          CHECK(ours == reference_token);
          ++greedy_checked;
        }
      }
      // Teacher forcing: continue with llama.cpp's token.
      const int32_t pos = static_cast<int32_t>(tokens.size());
      tokens.push_back(reference_token);
      REQUIRE(model.Forward({{{std::span(tokens).subspan(pos), pos, blocks, true}}}, *cache, logits)
                  .ok());
      ++step_index;
    }
    ++compared_prompts;
  }
  WARN("compared " << compared_prompts << " prompts, " << greedy_checked
                   << " greedy steps; largest top-5 logit difference " << worst_difference);
}

}  // namespace
}  // namespace tessera::engine
