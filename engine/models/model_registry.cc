#include "engine/models/model_registry.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/json_file.h"
#include "common/status_macros.h"
#include "engine/models/deepseek_v3.h"
#include "engine/models/qwen3_moe.h"

namespace tessera::engine {
namespace {

struct Entry {
  absl::string_view architecture;
  ModelFactory factory;
};

constexpr Entry kArchitectures[] = {
    {"llama", &CreateLlamaModel},
};

using HfModelLoader = absl::StatusOr<std::unique_ptr<Model>> (*)(const std::string&,
                                                                 const ModelOptions&);
struct HfEntry {
  absl::string_view model_type;
  HfModelLoader load;
};

constexpr HfEntry kHfModelTypes[] = {
    {"qwen3_moe", &LoadQwen3Moe},
    {"qwen3", &LoadQwen3},
    {"llama", &LoadHfLlama},
    {"deepseek_v3", &LoadDeepseekV3},
};

}  // namespace

absl::StatusOr<ModelFactory> FindModelFactory(absl::string_view architecture) {
  for (const Entry& e : kArchitectures) {
    if (e.architecture == architecture) return e.factory;
  }
  return absl::UnimplementedError(
      absl::StrCat("model architecture '", architecture, "' is not supported"));
}

absl::StatusOr<std::unique_ptr<Model>> CreateModel(const GgufFile& file,
                                                   const ModelOptions& options) {
  if (options.pool == nullptr) return absl::InvalidArgumentError("ModelOptions.pool is required");
  TESSERA_ASSIGN_OR_RETURN(std::string architecture, file.GetString("general.architecture"));
  TESSERA_ASSIGN_OR_RETURN(ModelFactory factory, FindModelFactory(architecture));
  return factory(file, options);
}

absl::StatusOr<std::unique_ptr<Model>> CreateHfModel(const std::string& directory,
                                                     const ModelOptions& options) {
  const std::string config_path = (std::filesystem::path(directory) / "config.json").string();
  TESSERA_ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonFile(config_path));
  if (!config.is_object() || !config.contains("model_type") || !config["model_type"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": no model_type string"));
  }
  const std::string model_type = config["model_type"].get<std::string>();
  for (const HfEntry& e : kHfModelTypes) {
    if (e.model_type == model_type) return e.load(directory, options);
  }
  std::string known;
  for (const HfEntry& e : kHfModelTypes) {
    absl::StrAppend(&known, known.empty() ? "" : ", ", e.model_type);
  }
  return absl::UnimplementedError(absl::StrCat(config_path, ": model_type '", model_type,
                                               "' is not supported (supported: ", known, ")"));
}

kvcache::KvCacheShape KvShapeFor(const ModelConfig& config, int32_t block_size,
                                 int32_t num_blocks) {
  kvcache::KvCacheShape shape;
  shape.num_layers = config.num_layers;
  shape.num_kv_heads = config.num_kv_heads;
  shape.head_dim = config.head_dim;
  shape.block_size = block_size;
  shape.num_blocks = num_blocks;
  return shape;
}

}  // namespace tessera::engine
