#include "engine/safetensors/hf_checkpoint.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/json_file.h"

namespace tessera::engine {

using json = nlohmann::json;

absl::StatusOr<std::unique_ptr<HfCheckpoint>> HfCheckpoint::Open(const std::string& directory) {
  auto checkpoint = std::unique_ptr<HfCheckpoint>(new HfCheckpoint());
  checkpoint->directory_ = directory;
  const std::filesystem::path dir(directory);
  absl::StatusOr<json> config = ReadJsonFile((dir / "config.json").string());
  if (!config.ok()) return config.status();
  if (!config->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat((dir / "config.json").string(), ": not a JSON object"));
  }
  checkpoint->config_ = *std::move(config);

  std::vector<std::string> shards;
  const std::filesystem::path index = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(index)) {
    absl::StatusOr<json> map = ReadJsonFile(index.string());
    if (!map.ok()) return map.status();
    if (!map->contains("weight_map") || !(*map)["weight_map"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(index.string(), ": no weight_map object"));
    }
    for (const auto& [tensor, file] : (*map)["weight_map"].items()) {
      if (!file.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(index.string(), ": weight_map[\"", tensor, "\"] is not a file name"));
      }
      const std::string name = file.get<std::string>();
      if (name.find('/') != std::string::npos || name == "..") {
        return absl::InvalidArgumentError(
            absl::StrCat(index.string(), ": shard \"", name, "\" is outside the directory"));
      }
      if (std::find(shards.begin(), shards.end(), name) == shards.end()) shards.push_back(name);
    }
  } else {
    shards.push_back("model.safetensors");
  }
  for (const std::string& shard : shards) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open((dir / shard).string());
    if (!file.ok()) return file.status();
    for (const SafetensorsTensor& tensor : (*file)->tensors()) {
      if (!checkpoint->tensor_file_.emplace(tensor.name, file->get()).second) {
        return absl::InvalidArgumentError(absl::StrCat(directory, ": tensor \"", tensor.name,
                                                       "\" appears in more than one shard"));
      }
    }
    checkpoint->files_.push_back(*std::move(file));
  }
  return checkpoint;
}

absl::StatusOr<const json*> HfCheckpoint::Field(absl::string_view key) const {
  auto it = config_.find(std::string(key));
  if (it == config_.end() || it->is_null()) {
    return absl::NotFoundError(absl::StrCat(directory_, "/config.json: no field \"", key, "\""));
  }
  return &*it;
}

absl::StatusOr<int64_t> HfCheckpoint::Int(absl::string_view key, int64_t min) const {
  absl::StatusOr<const json*> field = Field(key);
  if (!field.ok()) return field.status();
  if (!(*field)->is_number_integer() || (*field)->get<int64_t>() < min) {
    return absl::InvalidArgumentError(absl::StrCat(directory_, "/config.json: \"", key, "\" is ",
                                                   (*field)->dump(),
                                                   "; expected an integer >= ", min));
  }
  return (*field)->get<int64_t>();
}

absl::StatusOr<int64_t> HfCheckpoint::Int(absl::string_view key, int64_t min,
                                          int64_t fallback) const {
  if (!Field(key).ok()) return fallback;
  return Int(key, min);
}

absl::StatusOr<double> HfCheckpoint::Float(absl::string_view key) const {
  absl::StatusOr<const json*> field = Field(key);
  if (!field.ok()) return field.status();
  if (!(*field)->is_number()) {
    return absl::InvalidArgumentError(absl::StrCat(directory_, "/config.json: \"", key, "\" is ",
                                                   (*field)->dump(), "; expected a number"));
  }
  return (*field)->get<double>();
}

absl::StatusOr<double> HfCheckpoint::Float(absl::string_view key, double fallback) const {
  if (!Field(key).ok()) return fallback;
  return Float(key);
}

absl::StatusOr<bool> HfCheckpoint::Bool(absl::string_view key, bool fallback) const {
  absl::StatusOr<const json*> field = Field(key);
  if (!field.ok()) return fallback;
  if (!(*field)->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(directory_, "/config.json: \"", key, "\" is ",
                                                   (*field)->dump(), "; expected true or false"));
  }
  return (*field)->get<bool>();
}

absl::StatusOr<std::string> HfCheckpoint::String(absl::string_view key,
                                                 std::string fallback) const {
  absl::StatusOr<const json*> field = Field(key);
  if (!field.ok()) return fallback;
  if (!(*field)->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(directory_, "/config.json: \"", key, "\" is ",
                                                   (*field)->dump(), "; expected a string"));
  }
  return (*field)->get<std::string>();
}

absl::StatusOr<std::vector<float>> HfCheckpoint::Tensor(absl::string_view name,
                                                        std::span<const int64_t> shape) const {
  auto it = tensor_file_.find(name);
  if (it == tensor_file_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(directory_, ": the checkpoint has no tensor \"", name, "\""));
  }
  absl::StatusOr<std::vector<float>> values = it->second->ReadFloats(name, shape);
  if (!values.ok()) return values;
  const SafetensorsDtype dtype = it->second->FindTensor(name)->dtype;
  if (dtype == SafetensorsDtype::kF8E4M3 || dtype == SafetensorsDtype::kF8E5M2) {
    if (absl::Status s = ApplyBlockScales(name, shape, *values); !s.ok()) return s;
  }
  return values;
}

absl::Status HfCheckpoint::ApplyBlockScales(absl::string_view name,
                                            std::span<const int64_t> shape,
                                            std::vector<float>& values) const {
  const std::string scale_name = absl::StrCat(name, "_scale_inv");
  if (shape.size() != 2 || !HasTensor(scale_name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        directory_, ": FP8 tensor \"", name, "\" has no block scales (\"", scale_name,
        "\"); only 2-D weights with block scales, as DeepSeek-V3's release stores them, load"));
  }
  // quantization_config.weight_block_size: [rows, columns] of a block.
  int64_t block[2] = {128, 128};
  auto config = config_.find("quantization_config");
  if (config != config_.end() && config->contains("weight_block_size")) {
    const json& size = (*config)["weight_block_size"];
    constexpr int64_t kMaxBlock = int64_t{1} << 20;
    if (!size.is_array() || size.size() != 2 || !size[0].is_number_integer() ||
        !size[1].is_number_integer() || size[0].get<int64_t>() < 1 ||
        size[1].get<int64_t>() < 1 || size[0].get<int64_t>() > kMaxBlock ||
        size[1].get<int64_t>() > kMaxBlock) {
      return absl::InvalidArgumentError(
          absl::StrCat(directory_, "/config.json: quantization_config.weight_block_size is ",
                       size.dump(), "; expected [rows, columns], each in [1, 2^20]"));
    }
    block[0] = size[0].get<int64_t>();
    block[1] = size[1].get<int64_t>();
  }
  const int64_t rows = shape[0];
  const int64_t columns = shape[1];
  const int64_t block_rows = rows == 0 ? 0 : (rows - 1) / block[0] + 1;
  const int64_t block_columns = columns == 0 ? 0 : (columns - 1) / block[1] + 1;
  auto it = tensor_file_.find(scale_name);
  const int64_t scale_shape[2] = {block_rows, block_columns};
  absl::StatusOr<std::vector<float>> scales = it->second->ReadFloats(scale_name, scale_shape);
  if (!scales.ok()) return scales.status();
  for (int64_t r = 0; r < rows; ++r) {
    const float* scale_row = scales->data() + (r / block[0]) * block_columns;
    float* row = values.data() + r * columns;
    for (int64_t c = 0; c < columns; ++c) row[c] *= scale_row[c / block[1]];
  }
  return absl::OkStatus();
}

}  // namespace tessera::engine
