#include "engine/safetensors/synthetic_weights.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/safetensors/safetensors_file.h"
#include "tests/test_paths.h"

namespace tessera::engine {
namespace {

nlohmann::json LoadReference(const std::string& name) {
  std::ifstream in(testing::TestDataPath("moe/" + name + ".json"));
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
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
                                     "deepseek_v3_tiny_fp8");
  const nlohmann::json reference = LoadReference(name);
  const uint64_t seed = reference["seed"].get<uint64_t>();
  int checked = 0;
  for (const SyntheticTensor& tensor : Manifest(reference)) {
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
  CHECK(checked > 300);
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

}  // namespace
}  // namespace tessera::engine
