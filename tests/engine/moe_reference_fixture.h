// Loads a tiny MoE reference from tests/data/moe (made by
// scripts/reference/make_moe_references.py): writes its checkpoint (config.json and the
// deterministic weights as model.safetensors) into a temporary directory, and reads
// transformers' logits.
#ifndef TESSERA_TESTS_ENGINE_MOE_REFERENCE_FIXTURE_H_
#define TESSERA_TESTS_ENGINE_MOE_REFERENCE_FIXTURE_H_

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/models/deepseek_v3.h"
#include "engine/models/qwen3_moe.h"
#include "engine/safetensors/synthetic_weights.h"
#include "tests/test_paths.h"

namespace tessera::testing {

struct MoeReference {
  std::string checkpoint_dir;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<float>> logits;  // Per prompt: [positions][vocab].
  int32_t vocab = 0;

  ~MoeReference() {
    if (!checkpoint_dir.empty()) std::filesystem::remove_all(checkpoint_dir);
  }
};

// Returns false (with `error`) if the data is missing or the checkpoint cannot be written.
// The reference models and the functions that load them.
using MoeLoader = absl::StatusOr<std::unique_ptr<engine::Model>> (*)(const std::string&,
                                                                     const engine::ModelOptions&);
struct MoeModelKind {
  const char* reference;
  MoeLoader load;
};
// deepseek_v3_tiny_yarn: the same weights with DeepSeek-V3's released YaRN rope_scaling.
// deepseek_v3_tiny_fp8: the same weights stored as the FP8 release stores them (E4M3 in
// 128x128 blocks with scales).
// qwen3_tiny, llama_tiny: the dense families loaded with the same blocks (no experts; the
// expert-parallel tests run them too, with nothing to dispatch).
inline constexpr MoeModelKind kMoeModels[] = {
    {"qwen3_moe_tiny", &engine::LoadQwen3Moe},
    {"deepseek_v3_tiny", &engine::LoadDeepseekV3},
    {"deepseek_v3_tiny_yarn", &engine::LoadDeepseekV3},
    {"deepseek_v3_tiny_fp8", &engine::LoadDeepseekV3},
    {"qwen3_tiny", &engine::LoadQwen3},
    {"llama_tiny", &engine::LoadHfLlama}};

// Writes the reference's checkpoint into `dir` (created): config.json and the weights as
// model.safetensors.
inline bool WriteMoeCheckpoint(const nlohmann::json& doc, const std::string& dir,
                               std::string& error) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << doc["config"].dump(1);
  std::vector<engine::SyntheticTensor> tensors;
  for (const nlohmann::json& t : doc["tensors"]) {
    tensors.push_back({.name = t["name"].get<std::string>(),
                       .shape = t["shape"].get<std::vector<int64_t>>(),
                       .scale = t["scale"].get<double>(),
                       .offset = t["offset"].get<double>(),
                       .row_scales = {},
                       .fp8_block = t.value("fp8_block", 0)});
  }
  absl::Status written = engine::WriteSyntheticSafetensors(dir + "/model.safetensors",
                                                           doc["seed"].get<uint64_t>(), tensors);
  if (!written.ok()) {
    error = std::string(written.message());
    return false;
  }
  return true;
}

inline bool LoadMoeReference(const std::string& name, MoeReference& ref, std::string& error) {
  std::ifstream in(TestDataPath("moe/" + name + ".json"));
  if (!in) {
    error = "missing tests/data/moe/" + name + ".json";
    return false;
  }
  const nlohmann::json doc = nlohmann::json::parse(in);
  ref.checkpoint_dir = (std::filesystem::temp_directory_path() /
                        ("tessera-" + name + "-" + std::to_string(::getpid())))
                           .string();
  if (!WriteMoeCheckpoint(doc, ref.checkpoint_dir, error)) return false;
  ref.vocab = doc["config"]["vocab_size"].get<int32_t>();
  ref.prompts = doc["prompts"].get<std::vector<std::vector<int32_t>>>();
  for (const nlohmann::json& per_prompt : doc["logits"]) {
    std::vector<float> values;
    for (const nlohmann::json& row : per_prompt) {
      for (const nlohmann::json& v : row) values.push_back(v.get<float>());
    }
    ref.logits.push_back(std::move(values));
  }
  for (size_t p = 0; p < ref.prompts.size(); ++p) {
    if (p >= ref.logits.size() ||
        ref.logits[p].size() != ref.prompts[p].size() * static_cast<size_t>(ref.vocab)) {
      error = "the reference's logits do not match its prompts";
      return false;
    }
  }
  return true;
}

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_ENGINE_MOE_REFERENCE_FIXTURE_H_
