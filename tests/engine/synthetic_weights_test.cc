#include "engine/safetensors/synthetic_weights.h"

#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/safetensors/hf_checkpoint.h"
#include "engine/safetensors/safetensors_file.h"
#include "tests/test_json.h"
#include "tests/test_paths.h"

namespace tessera::engine {
namespace {

nlohmann::json LoadReference(const std::string& name) {
  return testing::LoadTestJson("moe/" + name + ".json");
}

std::vector<SyntheticTensor> Manifest(const nlohmann::json& reference) {
  std::vector<SyntheticTensor> tensors;
  for (const nlohmann::json& t : reference["tensors"]) {
    tensors.push_back({.name = t["name"].get<std::string>(),
                       .shape = t["shape"].get<std::vector<int64_t>>(),
                       .scale = t["scale"].get<double>(),
                       .offset = t["offset"].get<double>(),
                       .row_scales = {}});
  }
  return tensors;
}

uint32_t Bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

TEST_CASE("Synthetic weights: the generator reproduces the reference script's values bit for bit",
          "[engine][synthetic]") {
  const std::string name = GENERATE("qwen3_moe_tiny", "deepseek_v3_tiny", "deepseek_v3_tiny_yarn",
                                     "deepseek_v3_tiny_fp8", "qwen3_tiny", "llama_tiny");
  const nlohmann::json reference = LoadReference(name);
  const uint64_t seed = reference["seed"].get<uint64_t>();
  int checked = 0;
  const std::vector<SyntheticTensor> manifest = Manifest(reference);
  for (const SyntheticTensor& tensor : manifest) {
    const std::vector<float> expected =
        reference["first_values"][tensor.name].get<std::vector<float>>();
    std::vector<float> got(expected.size());
    SyntheticValues(seed, tensor, 0, got);
    for (size_t i = 0; i < expected.size(); ++i) {
      INFO(tensor.name << "[" << i << "]");
      REQUIRE(Bits(got[i]) == Bits(expected[i]));
      ++checked;
    }
  }
  CHECK(manifest.size() > 30);
  CHECK(checked == 3 * static_cast<int>(manifest.size()));  // Three values of every tensor.
}

TEST_CASE("Synthetic weights: row scales widen chosen rows and leave the others alone",
          "[engine][moe]") {
  const SyntheticTensor plain{"router", {3, 16}, 0.5, 1.0, {}};
  SyntheticTensor scaled = plain;
  scaled.row_scales = {1.0, 4.0};  // Row 2 has no entry: unscaled.
  std::vector<float> a(48), b(48);
  SyntheticValues(7, plain, 0, a);
  SyntheticValues(7, scaled, 0, b);
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("element " << i);
    const double factor = i / 16 == 1 ? 4.0 : 1.0;
    CHECK(b[i] - 1.0 == Approx((a[i] - 1.0) * factor).margin(1e-6));
  }
  // Elements read from the middle see the same rows.
  std::vector<float> tail(20);
  SyntheticValues(7, scaled, 28, tail);
  CHECK(std::equal(tail.begin(), tail.end(), b.begin() + 28));
}

TEST_CASE("Synthetic weights: a written checkpoint reads back through the safetensors reader",
          "[engine][synthetic]") {
  const nlohmann::json reference = LoadReference("qwen3_moe_tiny");
  const uint64_t seed = reference["seed"].get<uint64_t>();
  const std::vector<SyntheticTensor> manifest = Manifest(reference);
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("tessera-synthetic-" + std::to_string(::getpid()) + ".safetensors"))
                               .string();
  REQUIRE(WriteSyntheticSafetensors(path, seed, manifest).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  REQUIRE(file.ok());
  CHECK((*file)->tensors().size() == manifest.size());
  // A tensor in the middle, read whole, equals the generator's values at every offset.
  const SyntheticTensor& expert = manifest[manifest.size() / 2];
  absl::StatusOr<std::vector<float>> values = (*file)->ReadFloats(expert.name, expert.shape);
  REQUIRE(values.ok());
  std::vector<float> tail(16);
  SyntheticValues(seed, expert, static_cast<int64_t>(values->size() - tail.size()), tail);
  for (size_t i = 0; i < tail.size(); ++i) {
    CHECK(Bits((*values)[values->size() - tail.size() + i]) == Bits(tail[i]));
  }
  std::filesystem::remove(path);
}

TEST_CASE("Synthetic weights: FP8 tensors are E4M3 blocks whose scales give the values back",
          "[engine][synthetic]") {
  // 130 x 300 in 128 x 128 blocks: 2 x 3 blocks, the last row and column of blocks partial.
  const SyntheticTensor weight{.name = "layer.weight", .shape = {130, 300}, .scale = 0.5,
                               .offset = 0.0, .row_scales = {}, .fp8_block = 128};
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("tessera-synthetic-fp8-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json")
      << R"({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}})";
  REQUIRE(WriteSyntheticSafetensors((dir / "model.safetensors").string(), 7, {&weight, 1}).ok());

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open((dir / "model.safetensors").string());
  REQUIRE(file.ok());
  REQUIRE((*file)->FindTensor("layer.weight") != nullptr);
  CHECK((*file)->FindTensor("layer.weight")->dtype == SafetensorsDtype::kF8E4M3);
  const SafetensorsTensor* scales = (*file)->FindTensor("layer.weight_scale_inv");
  REQUIRE(scales != nullptr);
  CHECK(scales->shape == std::vector<int64_t>{2, 3});

  absl::StatusOr<std::unique_ptr<HfCheckpoint>> checkpoint = HfCheckpoint::Open(dir.string());
  REQUIRE(checkpoint.ok());
  absl::StatusOr<std::vector<float>> values = (*checkpoint)->Tensor("layer.weight", {130, 300});
  REQUIRE(values.ok());
  std::vector<float> original(130 * 300);
  SyntheticValues(7, weight, 0, original);
  // Each value is its E4M3 rounding (3 mantissa bits: within 1/16 relative, or half the
  // smallest subnormal step of its block), and each block's largest magnitude comes back
  // whole (it is 448, E4M3's largest value, times the scale).
  std::vector<float> block_max_in(6, 0.0f), block_max_out(6, 0.0f);
  auto block_of = [](int r, int c) { return static_cast<size_t>((r / 128) * 3 + c / 128); };
  for (int r = 0; r < 130; ++r) {
    for (int c = 0; c < 300; ++c) {
      float& in = block_max_in[block_of(r, c)];
      float& out = block_max_out[block_of(r, c)];
      in = std::max(in, std::fabs(original[r * 300 + c]));
      out = std::max(out, std::fabs((*values)[r * 300 + c]));
    }
  }
  int worse = 0;
  for (int r = 0; r < 130; ++r) {
    for (int c = 0; c < 300; ++c) {
      const float in = original[r * 300 + c];
      const float out = (*values)[r * 300 + c];
      const float half_subnormal_step = block_max_in[block_of(r, c)] / 448.0f / 1024.0f;
      if (std::fabs(out - in) > std::fabs(in) / 16.0f + half_subnormal_step + 1e-7f) ++worse;
    }
  }
  CHECK(worse == 0);
  for (size_t b = 0; b < 6; ++b) {
    CHECK(block_max_out[b] == Approx(block_max_in[b]).epsilon(1e-6));
  }
  // Not a copy: the rounding shows.
  int changed = 0;
  for (size_t i = 0; i < original.size(); ++i) changed += original[i] != (*values)[i];
  CHECK(changed > 1000);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tessera::engine
