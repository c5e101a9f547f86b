#include "engine/safetensors/safetensors_file.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/safetensors/fp8.h"
#include "kernels/fp16.h"

namespace tessera::engine {
namespace {

using json = nlohmann::json;

// Far beyond any real header (a few MB for the largest checkpoints' shards), small enough
// that a hostile length cannot make the parser allocate much.
constexpr uint64_t kMaxHeaderBytes = 100 << 20;

struct DtypeInfo {
  absl::string_view name;
  SafetensorsDtype dtype;
  int size;
};
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", SafetensorsDtype::kBool, 1}, {"U8", SafetensorsDtype::kU8, 1},
    {"I8", SafetensorsDtype::kI8, 1},     {"I16", SafetensorsDtype::kI16, 2},
    {"I32", SafetensorsDtype::kI32, 4},   {"I64", SafetensorsDtype::kI64, 8},
    {"F8_E4M3", SafetensorsDtype::kF8E4M3, 1}, {"F8_E5M2", SafetensorsDtype::kF8E5M2, 1},
    {"F16", SafetensorsDtype::kF16, 2},   {"BF16", SafetensorsDtype::kBF16, 2},
    {"F32", SafetensorsDtype::kF32, 4},   {"F64", SafetensorsDtype::kF64, 8},
};

std::string ShapeString(std::span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

int SafetensorsDtypeSize(SafetensorsDtype dtype) {
  for (const DtypeInfo& info : kDtypes) {
    if (info.dtype == dtype) return info.size;
  }
  return 0;
}

absl::string_view SafetensorsDtypeName(SafetensorsDtype dtype) {
  for (const DtypeInfo& info : kDtypes) {
    if (info.dtype == dtype) return info.name;
  }
  return "?";
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  absl::StatusOr<std::unique_ptr<MappedFile>> mapping = MappedFile::Open(path);
  if (!mapping.ok()) return mapping.status();
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = Parse((*mapping)->bytes(), path);
  if (!file.ok()) return file.status();
  (*file)->mapping_ = *std::move(mapping);
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Parse(
    std::span<const uint8_t> bytes, std::string source_name) {
  auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", parts...));
  };
  if (bytes.size() < 8) {
    return error("the file is ", bytes.size(),
                 " bytes; a safetensors file starts with an 8-byte header length");
  }
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | bytes[static_cast<size_t>(i)];
  if (header_bytes > bytes.size() - 8 || header_bytes > kMaxHeaderBytes) {
    return error("header length ", header_bytes, " (at offset 0) exceeds the file's ",
                 bytes.size() - 8, " remaining bytes or the ", kMaxHeaderBytes, "-byte limit");
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes.data() + 8);
  json header;
  try {
    header = json::parse(header_begin, header_begin + header_bytes);
  } catch (const json::parse_error& e) {
    return error("the JSON header is malformed at byte offset ", 8 + e.byte, ": ", e.what());
  }
  if (!header.is_object()) return error("the JSON header at offset 8 is not an object");

  const std::span<const uint8_t> data = bytes.subspan(8 + header_bytes);
  auto file = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  file->source_name_ = source_name;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return error("__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) return error("__metadata__ value of \"", key, "\" is not a string");
        file->metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    auto bad = [&](auto&&... parts) { return error("tensor \"", name, "\": ", parts...); };
    if (!entry.is_object()) return bad("the entry is not an object");
    const auto dtype_field = entry.find("dtype");
    const auto shape_field = entry.find("shape");
    const auto offsets_field = entry.find("data_offsets");
    if (dtype_field == entry.end() || !dtype_field->is_string()) return bad("no string dtype");
    if (shape_field == entry.end() || !shape_field->is_array()) return bad("no shape array");
    if (offsets_field == entry.end() || !offsets_field->is_array() || offsets_field->size() != 2) {
      return bad("data_offsets is not an array of two offsets");
    }
    SafetensorsTensor tensor;
    tensor.name = name;
    const std::string dtype = dtype_field->get<std::string>();
    const DtypeInfo* info = nullptr;
    for (const DtypeInfo& candidate : kDtypes) {
      if (candidate.name == dtype) info = &candidate;
    }
    if (info == nullptr) return bad("unsupported dtype \"", dtype, "\"");
    tensor.dtype = info->dtype;
    // Element counts stay below 2^48, so byte sizes cannot overflow.
    constexpr int64_t kMaxElements = int64_t{1} << 48;
    int64_t elements = 1;
    for (const json& dim : *shape_field) {
      if (!dim.is_number_integer() || dim.get<int64_t>() < 0) {
        return bad("shape ", shape_field->dump(), " has a dimension that is not a count");
      }
      const int64_t d = dim.get<int64_t>();
      if (d != 0 && elements > kMaxElements / d)
        return bad("shape ", shape_field->dump(), " is too large");
      elements *= d;
      tensor.shape.push_back(d);
    }
    tensor.num_elements = elements;
    uint64_t offsets[2];
    for (int i = 0; i < 2; ++i) {
      const json& o = (*offsets_field)[static_cast<size_t>(i)];
      if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0)) {
        return bad("data_offsets ", offsets_field->dump(), " are not byte offsets");
      }
      offsets[i] = o.get<uint64_t>();
    }
    if (offsets[0] > offsets[1] || offsets[1] > data.size()) {
      return bad("data_offsets ", offsets_field->dump(), " are outside the ", data.size(),
                 "-byte data section (which starts at file offset ", 8 + header_bytes, ")");
    }
    const uint64_t expected = static_cast<uint64_t>(elements) * static_cast<uint64_t>(info->size);
    if (offsets[1] - offsets[0] != expected) {
      return bad("data_offsets ", offsets_field->dump(), " span ", offsets[1] - offsets[0],
                 " bytes but ", dtype, " ", ShapeString(tensor.shape), " needs ", expected);
    }
    tensor.data = data.subspan(offsets[0], offsets[1] - offsets[0]);
    file->tensors_.push_back(std::move(tensor));
  }
  // The tensors must tile the data section exactly: no overlap (two tensors sharing bytes) and
  // no holes.
  std::sort(file->tensors_.begin(), file->tensors_.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              return a.data.data() < b.data.data() ||
                     (a.data.data() == b.data.data() && a.data.size() < b.data.size());
            });
  const uint8_t* cursor = data.data();
  for (const SafetensorsTensor& tensor : file->tensors_) {
    if (tensor.data.data() != cursor) {
      const int64_t at = tensor.data.data() - data.data();
      const int64_t expected = cursor - data.data();
      return error("tensor \"", tensor.name, "\" starts at data offset ", at, " but the previous ",
                   "tensor ends at ", expected, at < expected ? " (overlap)" : " (a hole)");
    }
    cursor += tensor.data.size();
  }
  if (cursor != data.data() + data.size()) {
    return error(data.size() - static_cast<size_t>(cursor - data.data()),
                 " bytes at the end of the data section belong to no tensor");
  }
  for (size_t i = 0; i < file->tensors_.size(); ++i) {
    file->tensor_index_[file->tensors_[i].name] = i;
  }
  return file;
}

const SafetensorsTensor* SafetensorsFile::FindTensor(absl::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<std::vector<float>> SafetensorsFile::ReadFloats(
    absl::string_view name, std::span<const int64_t> shape) const {
  const SafetensorsTensor* tensor = FindTensor(name);
  if (tensor == nullptr) {
    return absl::NotFoundError(absl::StrCat(source_name_, ": no tensor \"", name, "\""));
  }
  if (!std::equal(shape.begin(), shape.end(), tensor->shape.begin(), tensor->shape.end())) {
    return absl::InvalidArgumentError(absl::StrCat(source_name_, ": tensor \"", name,
                                                   "\" has shape ", ShapeString(tensor->shape),
                                                   "; expected ", ShapeString(shape)));
  }
  std::vector<float> values(static_cast<size_t>(tensor->num_elements));
  const uint8_t* p = tensor->data.data();
  switch (tensor->dtype) {
    case SafetensorsDtype::kF32:
      std::memcpy(values.data(), p, values.size() * sizeof(float));
      break;
    case SafetensorsDtype::kF16:
    case SafetensorsDtype::kBF16:
      for (size_t i = 0; i < values.size(); ++i) {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        values[i] = tensor->dtype == SafetensorsDtype::kF16 ? kernels::Fp16ToFp32(bits)
                                                            : kernels::Bf16ToFp32(bits);
      }
      break;
    case SafetensorsDtype::kF8E4M3:
      for (size_t i = 0; i < values.size(); ++i) values[i] = Fp8E4M3ToFloat(p[i]);
      break;
    case SafetensorsDtype::kF8E5M2:
      for (size_t i = 0; i < values.size(); ++i) values[i] = Fp8E5M2ToFloat(p[i]);
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(source_name_, ": tensor \"", name, "\" is ",
                                                     SafetensorsDtypeName(tensor->dtype),
                                                     ", not a float type"));
  }
  return values;
}

}  // namespace tessera::engine
