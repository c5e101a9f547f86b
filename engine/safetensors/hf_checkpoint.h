// A Hugging Face checkpoint directory: config.json plus model.safetensors, or shards listed by
// model.safetensors.index.json. Config fields and tensors are read with their names checked:
// every error names the file and the field or tensor.
// Thread-safety: thread-safe after Open() returns (immutable).
#ifndef TESSERA_ENGINE_SAFETENSORS_HF_CHECKPOINT_H_
#define TESSERA_ENGINE_SAFETENSORS_HF_CHECKPOINT_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/safetensors/safetensors_file.h"

namespace tessera::engine {

class HfCheckpoint {
 public:
  static absl::StatusOr<std::unique_ptr<HfCheckpoint>> Open(const std::string& directory);

  const std::string& directory() const { return directory_; }
  const nlohmann::json& config() const { return config_; }

  // Config fields: NotFound if absent (unless a default is given), InvalidArgument if of
  // another type or out of range.
  absl::StatusOr<int64_t> Int(absl::string_view key, int64_t min = 0) const;
  absl::StatusOr<int64_t> Int(absl::string_view key, int64_t min, int64_t fallback) const;
  absl::StatusOr<double> Float(absl::string_view key) const;
  absl::StatusOr<double> Float(absl::string_view key, double fallback) const;
  absl::StatusOr<bool> Bool(absl::string_view key, bool fallback) const;
  absl::StatusOr<std::string> String(absl::string_view key, std::string fallback) const;

  bool HasTensor(absl::string_view name) const { return tensor_file_.contains(name); }
  // A tensor as floats, checked against `shape`. FP8 weights are multiplied by their block
  // scales (`<name>_scale_inv`, blocks of quantization_config.weight_block_size, default
  // 128x128), as DeepSeek-V3's FP8 release stores them.
  absl::StatusOr<std::vector<float>> Tensor(absl::string_view name,
                                            std::span<const int64_t> shape) const;
  absl::StatusOr<std::vector<float>> Tensor(absl::string_view name,
                                            std::initializer_list<int64_t> shape) const {
    return Tensor(name, std::span<const int64_t>(shape.begin(), shape.size()));
  }

 private:
  HfCheckpoint() = default;
  absl::StatusOr<const nlohmann::json*> Field(absl::string_view key) const;
  absl::Status ApplyBlockScales(absl::string_view name, std::span<const int64_t> shape,
                                std::vector<float>& values) const;

  std::string directory_;
  nlohmann::json config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  absl::flat_hash_map<std::string, const SafetensorsFile*> tensor_file_;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_SAFETENSORS_HF_CHECKPOINT_H_
