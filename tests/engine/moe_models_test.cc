#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <vector>

#include "engine/models/deepseek_v3.h"
#include "engine/models/qwen3_moe.h"
#include "kvcache/paged_kv_cache.h"
#include "tests/engine/moe_reference_fixture.h"

namespace tessera::engine {
namespace {

// Tolerance against transformers' fp32 logits, per unit of their spread (standard
// deviation; about 1 for the untied models, about 10 for llama_tiny, whose output shares the
// embedding's larger weights). Tessera keeps the KV cache in fp16 and sums in another order;
// the largest differences seen are 1.1e-3 (Qwen3-MoE), 1.6e-3 (DeepSeek-V3) and 1.7e-3
// (Qwen3), and 1.25e-2 for llama_tiny (1.3e-3 of its spread).
constexpr float kLogitTolerance = 5e-3f;

float StandardDeviation(const std::vector<std::vector<float>>& logits) {
  double sum = 0, squares = 0;
  size_t n = 0;
  for (const std::vector<float>& prompt : logits) {
    for (float v : prompt) {
      sum += v;
      squares += static_cast<double>(v) * v;
      ++n;
    }
  }
  const double mean = sum / static_cast<double>(n);
  return static_cast<float>(std::sqrt(squares / static_cast<double>(n) - mean * mean));
}

TEST_CASE("MoE models: logits match transformers' within the tolerance, prefill then decode",
          "[engine][moe]") {
  const testing::MoeModelKind kind =
      GENERATE(from_range(std::begin(testing::kMoeModels), std::end(testing::kMoeModels)));
  const char* const name = kind.reference;
  const testing::MoeLoader load = kind.load;
  INFO(name);
  testing::MoeReference ref;
  std::string error;
  REQUIRE(testing::LoadMoeReference(name, ref, error));
  kernels::ThreadPool pool(2);
  absl::StatusOr<std::unique_ptr<Model>> model =
      load(ref.checkpoint_dir, ModelOptions{.pool = &pool});
  INFO(model.status().ToString());
  REQUIRE(model.ok());
  const ModelConfig& config = (*model)->config();
  constexpr int32_t kBlockSize = 4;
  absl::StatusOr<std::unique_ptr<kvcache::PagedKvCache>> cache =
      kvcache::PagedKvCache::Create(KvShapeFor(config, kBlockSize, 64));
  REQUIRE(cache.ok());

  float worst = 0.0f;
  int argmax_agree = 0, positions = 0;
  int32_t next_block = 0;
  for (size_t p = 0; p < ref.prompts.size(); ++p) {
    const std::vector<int32_t>& prompt = ref.prompts[p];
    const int32_t n = static_cast<int32_t>(prompt.size());
    std::vector<kvcache::BlockId> blocks;
    for (int32_t i = 0; i < (n + kBlockSize - 1) / kBlockSize; ++i) blocks.push_back(next_block++);
    // The first half as one prefill chunk, the rest one token per step.
    const int32_t chunk = n / 2;
    std::vector<float> logits(static_cast<size_t>(config.vocab_size));
    for (int32_t start = 0; start < n;) {
      const int32_t count = start == 0 ? chunk : 1;
      SequenceStep step{.tokens = std::span<const int32_t>(prompt).subspan(start, count),
                        .start_pos = start,
                        .block_table = blocks,
                        .want_logits = true};
      REQUIRE((*model)->Forward({&step, 1}, **cache, logits).ok());
      const int32_t pos = start + count - 1;
      const float* expected = ref.logits[p].data() + static_cast<size_t>(pos) * ref.vocab;
      for (int32_t v = 0; v < ref.vocab; ++v) {
        worst = std::max(worst, std::fabs(logits[v] - expected[v]));
      }
      const auto ours = std::max_element(logits.begin(), logits.end()) - logits.begin();
      const auto theirs = std::max_element(expected, expected + ref.vocab) - expected;
      argmax_agree += ours == theirs;
      ++positions;
      start += count;
    }
  }
  const float spread = std::max(1.0f, StandardDeviation(ref.logits));
  INFO("largest logit difference " << worst << ", logits' spread " << spread);
  CHECK(worst < kLogitTolerance * spread);
  CHECK(argmax_agree == positions);
  CHECK(positions > 10);
}

TEST_CASE("MoE models: a broken Qwen3-MoE checkpoint is refused with the field or tensor named",
          "[engine][moe]") {
  testing::MoeReference ref;
  std::string error;
  REQUIRE(testing::LoadMoeReference("qwen3_moe_tiny", ref, error));
  kernels::ThreadPool pool(1);
  {
    nlohmann::json config =
        nlohmann::json::parse(std::ifstream(ref.checkpoint_dir + "/config.json"));
    config["num_experts_per_tok"] = 64;
    std::ofstream(ref.checkpoint_dir + "/config.json") << config.dump();
  }
  absl::Status too_many = LoadQwen3Moe(ref.checkpoint_dir, ModelOptions{.pool = &pool}).status();
  CHECK(std::string(too_many.message()).find("num_experts_per_tok 64 exceeds num_experts 32") !=
        std::string::npos);
  {
    nlohmann::json config =
        nlohmann::json::parse(std::ifstream(ref.checkpoint_dir + "/config.json"));
    config["num_experts_per_tok"] = 8;
    config["num_experts"] = 33;  // The checkpoint has 32.
    std::ofstream(ref.checkpoint_dir + "/config.json") << config.dump();
  }
  absl::Status missing = LoadQwen3Moe(ref.checkpoint_dir, ModelOptions{.pool = &pool}).status();
  CHECK(std::string(missing.message())
            .find("mlp.gate.weight\" has shape [32, 256]; expected [33, 256]") !=
        std::string::npos);
  CHECK(LoadQwen3Moe("/nonexistent", ModelOptions{.pool = &pool}).status().code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("MoE models: an FP8 checkpoint whose block scales do not fit is refused, named",
          "[engine][moe]") {
  testing::MoeReference ref;
  std::string error;
  REQUIRE(testing::LoadMoeReference("deepseek_v3_tiny_fp8", ref, error));
  kernels::ThreadPool pool(1);
  auto load_with_blocks = [&](const nlohmann::json& block_size) {
    nlohmann::json config =
        nlohmann::json::parse(std::ifstream(ref.checkpoint_dir + "/config.json"));
    config["quantization_config"]["weight_block_size"] = block_size;
    std::ofstream(ref.checkpoint_dir + "/config.json") << config.dump();
    return LoadDeepseekV3(ref.checkpoint_dir, ModelOptions{.pool = &pool}).status();
  };
  // Scales for 128x128 blocks read as 64x64 ones: the scale tensor's shape is wrong.
  absl::Status wrong = load_with_blocks({64, 64});
  INFO(wrong.ToString());
  CHECK(wrong.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(wrong.message()).find("_scale_inv\" has shape") != std::string::npos);
  absl::Status malformed = load_with_blocks("128");
  CHECK(std::string(malformed.message()).find("quantization_config.weight_block_size") !=
        std::string::npos);
  CHECK(load_with_blocks({128, 128}).ok());
}

}  // namespace
}  // namespace tessera::engine
