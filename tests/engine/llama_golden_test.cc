// The model against two independent references on the same GGUF file, teacher-forced (fed the
// reference's tokens, so every step is compared in the same context):
//   - llama.cpp through llama-cpp-python (scripts/reference/make_goldens.py): greedy tokens and
//     top-5 logits over 64 steps for 14 prompts;
//   - an exact fp64 forward pass of the dequantized weights, with no activation quantization
//     (scripts/reference/make_exact_reference.py), which also recorded llama.cpp's other
//     attention path (flash attention) on the same steps.
//
// Tolerances, and why (docs/CORRECTNESS.md has the distributions):
//   kLogitTolerance = 1.5: ours vs llama.cpp, per top-5 logit. Both runtimes quantize
//     activations to 8 bits per 32 values before every matmul and round at different points,
//     and over 30 layers that noise reaches about one logit: llama.cpp's own two attention
//     paths differ by up to 1.16 on these steps, and each is up to 1.05 / 1.28 from exact.
//   kNearTie = 0.6: what decides a greedy token is the gap between the top two logits, and
//     llama.cpp's two paths disagree on that gap by up to 0.56. Where llama.cpp's top two are
//     closer than this, either token is right.
//   Against exact: our error must be of the size llama.cpp's is: mean and p99 within a quarter
//     of llama.cpp's, the single worst logit within twice its worst. The worst is a tail event:
//     with activations rounded to 8 bits, a change of ~1e-6 in one layer's output can flip
//     rounding steps downstream. Reordering the fp32 additions of the prefill attention kernel
//     alone moved one logit by 0.6 (max 1.02 -> 1.62) while the mean, p90 and p99 stayed put.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "engine/models/model.h"
#include "nlohmann/json.hpp"
#include "tests/engine/model_fixture.h"
#include "tests/engine/error_stats.h"
#include "tests/test_json.h"
#include "tests/test_paths.h"

namespace tessera::engine {
namespace {

constexpr float kLogitTolerance = 1.5f;
constexpr float kNearTie = 0.6f;
constexpr int kGreedySteps = 32;

TEST_CASE("Llama: logits and greedy tokens agree with llama.cpp and the exact forward pass",
          "[engine][model][golden]") {
  const nlohmann::json golden = testing::LoadTestJson("goldens/smollm2_q4_1.json");
  const nlohmann::json exact = testing::LoadTestJson("goldens/smollm2_q4_1_exact.json");
  REQUIRE(golden["prompts"].size() >= 12);
  REQUIRE(exact["prompts"].size() == golden["prompts"].size());

  Model& model = *testing::DefaultModel().model;
  const int32_t vocab = model.config().vocab_size;
  auto cache = kvcache::PagedKvCache::Create(KvShapeFor(model.config(), 16, 160)).value();
  std::vector<kvcache::BlockId> blocks(160);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::vector<float> logits(vocab);

  float worst_vs_llama = 0, worst_vs_exact = 0, worst_llama_vs_exact = 0;
  double sum_vs_exact = 0, sum_llama_vs_exact = 0;
  std::vector<float> errors_vs_exact, llama_errors_vs_exact;
  std::string worst_vs_exact_at;
  int entries = 0, greedy_compared = 0, near_ties = 0;
  for (size_t p = 0; p < golden["prompts"].size(); ++p) {
    const auto& prompt = golden["prompts"][p];
    const auto& exact_steps = exact["prompts"][p]["steps"];
    const std::string name = prompt["name"];
    REQUIRE(exact["prompts"][p]["name"] == name);
    std::vector<int32_t> tokens = prompt["prompt_ids"].get<std::vector<int32_t>>();
    REQUIRE(model.Forward({{{tokens, 0, blocks, true}}}, *cache, logits).ok());
    bool literal_rule_stopped = false;
    for (size_t step = 0; step < prompt["steps"].size(); ++step) {
      const auto& top5 = prompt["steps"][step]["top5"];
      const auto& exact_top5 = exact_steps[step]["golden_top5_exact"];
      for (size_t k = 0; k < top5.size(); ++k) {
        const int32_t id = top5[k][0];
        const float llama = top5[k][1], truth = exact_top5[k];
        INFO("prompt " << name << ", step " << step << ", token " << id << ": ours " << logits[id]
                       << ", llama.cpp " << llama << ", exact " << truth);
        CHECK(std::fabs(logits[id] - llama) <= kLogitTolerance);
        worst_vs_llama = std::max(worst_vs_llama, std::fabs(logits[id] - llama));
        if (std::fabs(logits[id] - truth) > worst_vs_exact) {
          worst_vs_exact = std::fabs(logits[id] - truth);
          worst_vs_exact_at = name + " step " + std::to_string(step);
        }
        errors_vs_exact.push_back(std::fabs(logits[id] - truth));
        llama_errors_vs_exact.push_back(std::fabs(llama - truth));
        worst_llama_vs_exact = std::max(worst_llama_vs_exact, std::fabs(llama - truth));
        sum_vs_exact += std::fabs(logits[id] - truth);
        sum_llama_vs_exact += std::fabs(llama - truth);
        ++entries;
      }
      // Greedy: wherever llama.cpp's choice is clear, ours must be the same token. (The rule
      // "identical for the first 32 steps until the first near-tie" is the part of this
      // before the first skipped step.)
      const float gap = float(top5[0][1]) - float(top5[1][1]);
      const int32_t reference_token = prompt["steps"][step]["token"];
      if (gap >= kNearTie) {
        const auto ours = std::max_element(logits.begin(), logits.end()) - logits.begin();
        INFO("prompt " << name << ", step " << step << ": llama.cpp's top-two gap " << gap);
        CHECK(ours == reference_token);
        ++greedy_compared;
      } else {
        ++near_ties;
        if (step < kGreedySteps && !literal_rule_stopped) {
          literal_rule_stopped = true;
          WARN("prompt " << name << ": first near-tie at step " << step << " (gap " << gap << ")");
        }
      }
      const int32_t pos = static_cast<int32_t>(tokens.size());
      tokens.push_back(reference_token);
      REQUIRE(model.Forward({{{std::span(tokens).subspan(pos), pos, blocks, true}}}, *cache, logits).ok());
    }
  }
  const double mean_vs_exact = sum_vs_exact / entries;
  const double mean_llama_vs_exact = sum_llama_vs_exact / entries;
  const float p99_vs_exact = testing::P99(errors_vs_exact);
  const float p99_llama_vs_exact = testing::P99(llama_errors_vs_exact);
  WARN("top-5 logits over " << entries << " entries: ours vs llama.cpp max " << worst_vs_llama
                            << "; vs exact: ours mean " << mean_vs_exact << " p99 " << p99_vs_exact
                            << " max " << worst_vs_exact << " (" << worst_vs_exact_at
                            << "), llama.cpp mean " << mean_llama_vs_exact << " p99 "
                            << p99_llama_vs_exact << " max " << worst_llama_vs_exact
                            << "; greedy compared at " << greedy_compared << " steps, "
                            << near_ties << " near-ties skipped");
  CHECK(greedy_compared >= 300);
  CHECK(mean_vs_exact <= 1.25 * mean_llama_vs_exact);
  CHECK(p99_vs_exact <= 1.25 * p99_llama_vs_exact);
  CHECK(worst_vs_exact <= 2.0 * worst_llama_vs_exact);
}

}  // namespace
}  // namespace tessera::engine
