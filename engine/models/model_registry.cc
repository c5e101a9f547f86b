#include "engine/models/model_registry.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tessera::engine {
namespace {

struct Entry {
  absl::string_view architecture;
  ModelFactory factory;
};

constexpr Entry kArchitectures[] = {
    {"llama", &CreateLlamaModel},
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
