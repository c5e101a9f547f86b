// The default model with its matrices unquantized: the Q4_1 file rewritten in memory with the
// attention's Q and K projections as F16, every other matrix as BF16 and the embeddings as F32,
// each holding the dequantized Q4_1 values. All of them pack as bf16 and run on the bf16
// matmul kernels (VDPBF16PS where the CPU has AVX512_BF16), with bf16 activations.
//
// The reference is the exact fp64 forward pass of the same dequantized weights that the
// golden test uses (tests/data/goldens/smollm2_q4_1_exact.json), teacher-forced with
// llama.cpp's tokens. Rounding weights and activations to bf16 (8 significant bits) is noise of
// the same size as llama.cpp's 8-bit activation blocks, so the bounds are the golden test's:
// mean and p99 error within a quarter of llama.cpp's, the worst within twice its worst, and the
// same greedy token wherever llama.cpp's top two logits are 0.6 or more apart.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "engine/gguf/gguf_file.h"
#include "engine/models/model.h"
#include "engine/runtime/loaded_model.h"
#include "engine/tokenizer/tokenizer.h"
#include "kernels/dequantize.h"
#include "kernels/fp16.h"
#include "kernels/packed_matrix.h"
#include "kernels/thread_pool.h"
#include "nlohmann/json.hpp"
#include "tests/engine/gguf_rewrite.h"
#include "tests/engine/error_stats.h"
#include "tests/test_json.h"
#include "tests/test_paths.h"

namespace tessera::engine {
namespace {

constexpr float kNearTie = 0.6f;
constexpr size_t kSteps = 16;  // Of the goldens' 64 per prompt, to keep the test short.

std::optional<testing::ReplacedTensor> Unquantize(const GgufTensor& t) {
  const bool embeddings = t.name == "token_embd.weight";
  if (t.shape.size() != 2 || (t.type == kernels::TensorType::kF32 && !embeddings)) {
    return std::nullopt;  // Norm vectors stay F32.
  }
  const bool f16 = t.name.find("attn_q.") != std::string::npos ||
                   t.name.find("attn_k.") != std::string::npos;
  const kernels::TensorType type = embeddings ? kernels::TensorType::kF32
                                   : f16      ? kernels::TensorType::kF16
                                              : kernels::TensorType::kBF16;
  const int64_t cols = t.shape[0], rows = t.rows();
  const int64_t width = type == kernels::TensorType::kF32 ? 4 : 2;
  testing::ReplacedTensor out{type, std::vector<uint8_t>(rows * cols * width)};
  std::vector<float> row(cols);
  const int64_t row_bytes = kernels::RowBytes(t.type, cols);
  for (int64_t r = 0; r < rows; ++r) {
    kernels::DequantizeRow(t.type, t.data.data() + r * row_bytes, cols, row.data());
    uint8_t* dst = out.data.data() + r * cols * width;
    for (int64_t k = 0; k < cols; ++k) {
      if (type == kernels::TensorType::kF32) {
        std::memcpy(dst + 4 * k, &row[k], 4);
      } else {
        const uint16_t h = f16 ? kernels::Fp32ToFp16(row[k]) : kernels::Fp32ToBf16(row[k]);
        std::memcpy(dst + 2 * k, &h, 2);
      }
    }
  }
  return out;
}

TEST_CASE("Llama: the model with F32, F16 and BF16 matrices matches the exact forward pass",
          "[engine][model][golden]") {
  const nlohmann::json golden = testing::LoadTestJson("goldens/smollm2_q4_1.json");
  const nlohmann::json exact = testing::LoadTestJson("goldens/smollm2_q4_1_exact.json");
  auto quantized = GgufFile::Open(DefaultModelPath());
  REQUIRE(quantized.ok());
  const std::vector<uint8_t> image = testing::RewriteGguf(**quantized, Unquantize);
  auto file = GgufFile::Parse(image, "unquantized copy");
  REQUIRE(file.ok());
  for (const GgufTensor& t : (*file)->tensors()) {
    if (t.shape.size() == 2) REQUIRE(kernels::GetTensorTypeInfo(t.type).block_elements == 1);
  }
  kernels::ThreadPool pool(2);
  ModelOptions options;
  options.pool = &pool;
  auto created = CreateModel(**file, options);
  REQUIRE(created.ok());
  Model& model = **created;

  const int32_t vocab = model.config().vocab_size;
  auto cache = kvcache::PagedKvCache::Create(KvShapeFor(model.config(), 16, 160)).value();
  std::vector<kvcache::BlockId> blocks(160);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::vector<float> logits(vocab);
  std::vector<float> errors, llama_errors;
  float worst = 0, llama_worst = 0;
  int greedy_compared = 0;
  for (size_t p = 0; p < golden["prompts"].size(); ++p) {
    const auto& prompt = golden["prompts"][p];
    const auto& exact_steps = exact["prompts"][p]["steps"];
    std::vector<int32_t> tokens = prompt["prompt_ids"].get<std::vector<int32_t>>();
    REQUIRE(model.Forward({{{tokens, 0, blocks, true}}}, *cache, logits).ok());
    for (size_t step = 0; step < kSteps; ++step) {
      const auto& top5 = prompt["steps"][step]["top5"];
      const auto& exact_top5 = exact_steps[step]["golden_top5_exact"];
      for (size_t k = 0; k < top5.size(); ++k) {
        const int32_t id = top5[k][0];
        const float truth = exact_top5[k];
        errors.push_back(std::fabs(logits[id] - truth));
        llama_errors.push_back(std::fabs(float(top5[k][1]) - truth));
        worst = std::max(worst, errors.back());
        llama_worst = std::max(llama_worst, llama_errors.back());
      }
      const int32_t reference_token = prompt["steps"][step]["token"];
      if (float(top5[0][1]) - float(top5[1][1]) >= kNearTie) {
        const auto ours = std::max_element(logits.begin(), logits.end()) - logits.begin();
        INFO("prompt " << prompt["name"] << ", step " << step);
        CHECK(ours == reference_token);
        ++greedy_compared;
      }
      const int32_t pos = static_cast<int32_t>(tokens.size());
      tokens.push_back(reference_token);
      REQUIRE(model.Forward({{{std::span(tokens).subspan(pos), pos, blocks, true}}}, *cache, logits)
                  .ok());
    }
  }
  using testing::Mean;
  using testing::P99;
  WARN("unquantized copy vs exact over " << errors.size() << " top-5 logits: mean " << Mean(errors)
                                         << " p99 " << P99(errors) << " max " << worst
                                         << "; llama.cpp (Q4_1) mean " << Mean(llama_errors)
                                         << " p99 " << P99(llama_errors) << " max " << llama_worst
                                         << "; greedy compared at " << greedy_compared
                                         << " steps");
  CHECK(greedy_compared >= 100);
  CHECK(Mean(errors) <= 1.25 * Mean(llama_errors));
  CHECK(P99(errors) <= 1.25 * P99(llama_errors));
  CHECK(worst <= 2.0 * llama_worst);
}

TEST_CASE("Llama: an unquantized copy picks the Q4_1 file's greedy tokens where they are clear",
          "[engine][model]") {
  // Independent of the goldens: both files continue one prompt, fed the Q4_1 model's greedy
  // tokens, and wherever its top two logits are 0.6 or more apart the copy's choice is the same.
  auto quantized = GgufFile::Open(DefaultModelPath());
  REQUIRE(quantized.ok());
  const std::vector<uint8_t> image = testing::RewriteGguf(**quantized, Unquantize);
  auto file = GgufFile::Parse(image, "unquantized copy");
  REQUIRE(file.ok());
  kernels::ThreadPool pool(2);
  ModelOptions options;
  options.pool = &pool;
  auto unquantized = CreateModel(**file, options);
  auto reference = CreateModel(**quantized, options);
  REQUIRE(unquantized.ok());
  REQUIRE(reference.ok());
  // The copy carries all of the file's metadata, so its tokenizer is the same one.
  auto tokenizer = Tokenizer::FromGguf(**file);
  REQUIRE(tokenizer.ok());
  const std::string text = "The three primary colors are";
  std::vector<int32_t> tokens = (*tokenizer)->Encode(text, false);
  REQUIRE(tokens == (*Tokenizer::FromGguf(**quantized))->Encode(text, false));

  const int32_t vocab = (*reference)->config().vocab_size;
  auto cache_a = kvcache::PagedKvCache::Create(KvShapeFor((*reference)->config(), 16, 8)).value();
  auto cache_b = kvcache::PagedKvCache::Create(KvShapeFor((*reference)->config(), 16, 8)).value();
  std::vector<kvcache::BlockId> blocks(8);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::vector<float> a(vocab), b(vocab);
  int32_t pos = 0;
  int compared = 0;
  for (int step = 0; step < 48; ++step) {
    std::span<const int32_t> fresh = std::span(tokens).subspan(pos);
    REQUIRE((*reference)->Forward({{{fresh, pos, blocks, true}}}, *cache_a, a).ok());
    REQUIRE((*unquantized)->Forward({{{fresh, pos, blocks, true}}}, *cache_b, b).ok());
    pos = static_cast<int32_t>(tokens.size());
    std::vector<float> sorted = a;
    std::nth_element(sorted.begin(), sorted.begin() + 1, sorted.end(), std::greater<>());
    const auto top_a = std::max_element(a.begin(), a.end()) - a.begin();
    if (sorted[0] - sorted[1] >= kNearTie) {
      INFO("step " << step);
      CHECK(std::max_element(b.begin(), b.end()) - b.begin() == top_a);
      ++compared;
    }
    tokens.push_back(static_cast<int32_t>(top_a));
  }
  CHECK(compared >= 24);
}

}  // namespace
}  // namespace tessera::engine
