#include "engine/gguf/gguf_file.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tessera::engine {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian.
// Limits that no real model comes near; they stop a hostile header from making the parser
// allocate gigabytes before it reaches the end of a small file.
constexpr uint64_t kMaxStringBytes = 1 << 24;
constexpr uint64_t kMaxTensorDims = 4;
constexpr uint64_t kMaxAlignment = 1 << 16;

// Bounds-checked little-endian reader. Every read either succeeds inside the buffer or
// returns an error naming what was being read and the offset where it starts.
class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const std::string& source)
      : bytes_(bytes), source_(source) {}

  uint64_t offset() const { return offset_; }
  uint64_t remaining() const { return bytes_.size() - offset_; }

  absl::Status Error(absl::string_view what, uint64_t at) const {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF file ", source_, ": ", what, " (at byte offset ", at, ")"));
  }

  template <typename T>
  absl::StatusOr<T> Read(absl::string_view what) {
    if (remaining() < sizeof(T)) {
      return Error(absl::StrCat("truncated while reading ", what, ": need ", sizeof(T), " bytes, ",
                                remaining(), " left"),
                   offset_);
    }
    T value;
    std::memcpy(&value, bytes_.data() + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }

  absl::StatusOr<std::string> ReadString(absl::string_view what) {
    uint64_t start = offset_;
    TESSERA_ASSIGN_OR_RETURN(uint64_t length, Read<uint64_t>(what));
    if (length > kMaxStringBytes) {
      return Error(
          absl::StrCat(what, " has length ", length, ", over the limit of ", kMaxStringBytes),
          start);
    }
    if (length > remaining()) {
      return Error(absl::StrCat("truncated ", what, ": length ", length, " but only ", remaining(),
                                " bytes left"),
                   start);
    }
    std::string value(reinterpret_cast<const char*>(bytes_.data() + offset_), length);
    offset_ += length;
    return value;
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& source_;
  uint64_t offset_ = 0;
};

// Bytes a value of this scalar type occupies, or 0 for strings, arrays and unknown types.
uint64_t ScalarSize(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

bool IsKnownType(uint32_t raw) { return raw <= static_cast<uint32_t>(GgufValueType::kFloat64); }

bool IsIntegerType(GgufValueType t) {
  return t == GgufValueType::kUint8 || t == GgufValueType::kInt8 || t == GgufValueType::kUint16 ||
         t == GgufValueType::kInt16 || t == GgufValueType::kUint32 || t == GgufValueType::kInt32 ||
         t == GgufValueType::kUint64 || t == GgufValueType::kInt64;
}

}  // namespace

class GgufParser {
 public:
  GgufParser(GgufFile& file, std::span<const uint8_t> bytes)
      : file_(file), bytes_(bytes), reader_(bytes, file.source_name_) {}

  absl::Status Run() {
    TESSERA_ASSIGN_OR_RETURN(uint32_t magic, reader_.Read<uint32_t>("magic"));
    if (magic != kGgufMagic) return reader_.Error("not a GGUF file: bad magic", 0);
    TESSERA_ASSIGN_OR_RETURN(file_.version_, reader_.Read<uint32_t>("version"));
    if (file_.version_ != 2 && file_.version_ != 3) {
      return reader_.Error(absl::StrCat("unsupported GGUF version ", file_.version_), 4);
    }
    TESSERA_ASSIGN_OR_RETURN(uint64_t tensor_count, reader_.Read<uint64_t>("tensor count"));
    TESSERA_ASSIGN_OR_RETURN(uint64_t kv_count, reader_.Read<uint64_t>("metadata count"));
    // Each key/value needs at least 12 bytes and each tensor descriptor at least 24, so counts
    // beyond what the file could hold are rejected before any allocation.
    if (kv_count > reader_.remaining() / 12) {
      return reader_.Error(absl::StrCat("metadata count ", kv_count, " exceeds the file size"), 16);
    }
    if (tensor_count > reader_.remaining() / 24) {
      return reader_.Error(absl::StrCat("tensor count ", tensor_count, " exceeds the file size"),
                           8);
    }
    for (uint64_t i = 0; i < kv_count; ++i) TESSERA_RETURN_IF_ERROR(ReadKeyValue(i));
    TESSERA_RETURN_IF_ERROR(ReadAlignment());
    std::vector<uint64_t> descriptor_offsets;
    for (uint64_t i = 0; i < tensor_count; ++i) {
      descriptor_offsets.push_back(reader_.offset());
      TESSERA_RETURN_IF_ERROR(ReadTensorInfo(i));
    }
    return PlaceTensorData(descriptor_offsets);
  }

 private:
  absl::Status ReadKeyValue(uint64_t index) {
    uint64_t start = reader_.offset();
    TESSERA_ASSIGN_OR_RETURN(std::string key,
                             reader_.ReadString(absl::StrCat("key of metadata entry ", index)));
    if (key.empty())
      return reader_.Error(absl::StrCat("metadata entry ", index, " has an empty key"), start);
    if (file_.metadata_.contains(key)) {
      return reader_.Error(absl::StrCat("duplicate metadata key '", key, "'"), start);
    }
    if (key == "general.alignment") alignment_at_ = start;
    uint64_t type_at = reader_.offset();
    TESSERA_ASSIGN_OR_RETURN(uint32_t raw_type,
                             reader_.Read<uint32_t>(absl::StrCat("type of '", key, "'")));
    if (!IsKnownType(raw_type)) {
      return reader_.Error(absl::StrCat("metadata '", key, "' has unknown type ", raw_type),
                           type_at);
    }
    GgufValue value;
    value.type = static_cast<GgufValueType>(raw_type);
    if (value.type == GgufValueType::kArray) {
      TESSERA_RETURN_IF_ERROR(ReadArray(key, value));
    } else if (value.type == GgufValueType::kString) {
      TESSERA_ASSIGN_OR_RETURN(std::string s,
                               reader_.ReadString(absl::StrCat("value of '", key, "'")));
      value.value = std::move(s);
    } else {
      TESSERA_RETURN_IF_ERROR(ReadScalarInto(key, value.type, value));
    }
    file_.metadata_.emplace(std::move(key), std::move(value));
    return absl::OkStatus();
  }

  absl::Status ReadScalarInto(const std::string& key, GgufValueType type, GgufValue& out) {
    std::string what = absl::StrCat("value of '", key, "'");
    uint64_t at = reader_.offset();
    switch (type) {
      case GgufValueType::kFloat32: {
        TESSERA_ASSIGN_OR_RETURN(float v, reader_.Read<float>(what));
        out.value = static_cast<double>(v);
        return absl::OkStatus();
      }
      case GgufValueType::kFloat64: {
        TESSERA_ASSIGN_OR_RETURN(double v, reader_.Read<double>(what));
        out.value = v;
        return absl::OkStatus();
      }
      case GgufValueType::kBool: {
        TESSERA_ASSIGN_OR_RETURN(uint8_t v, reader_.Read<uint8_t>(what));
        if (v > 1) return reader_.Error(absl::StrCat(what, " is a bool of value ", v), at);
        out.value = v == 1;
        return absl::OkStatus();
      }
      default: {
        TESSERA_ASSIGN_OR_RETURN(int64_t v, ReadInteger(type, what));
        out.value = v;
        return absl::OkStatus();
      }
    }
  }

  absl::StatusOr<int64_t> ReadInteger(GgufValueType type, const std::string& what) {
    uint64_t at = reader_.offset();
    switch (type) {
      case GgufValueType::kUint8:
        return reader_.Read<uint8_t>(what);
      case GgufValueType::kInt8:
        return reader_.Read<int8_t>(what);
      case GgufValueType::kUint16:
        return reader_.Read<uint16_t>(what);
      case GgufValueType::kInt16:
        return reader_.Read<int16_t>(what);
      case GgufValueType::kUint32:
        return reader_.Read<uint32_t>(what);
      case GgufValueType::kInt32:
        return reader_.Read<int32_t>(what);
      case GgufValueType::kInt64:
        return reader_.Read<int64_t>(what);
      case GgufValueType::kUint64: {
        TESSERA_ASSIGN_OR_RETURN(uint64_t v, reader_.Read<uint64_t>(what));
        if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          return reader_.Error(absl::StrCat(what, " is too large: ", v), at);
        }
        return static_cast<int64_t>(v);
      }
      default:
        return reader_.Error(absl::StrCat(what, " is not an integer"), at);
    }
  }

  absl::Status ReadArray(const std::string& key, GgufValue& value) {
    uint64_t at = reader_.offset();
    TESSERA_ASSIGN_OR_RETURN(uint32_t raw_elem,
                             reader_.Read<uint32_t>(absl::StrCat("element type of '", key, "'")));
    if (!IsKnownType(raw_elem)) {
      return reader_.Error(absl::StrCat("array '", key, "' has unknown element type ", raw_elem),
                           at);
    }
    GgufValueType elem = static_cast<GgufValueType>(raw_elem);
    if (elem == GgufValueType::kArray) {
      return reader_.Error(absl::StrCat("array '", key, "' nests arrays, which is not supported"),
                           at);
    }
    value.array_type = elem;
    uint64_t count_at = reader_.offset();
    TESSERA_ASSIGN_OR_RETURN(uint64_t count,
                             reader_.Read<uint64_t>(absl::StrCat("length of '", key, "'")));
    uint64_t min_elem_bytes = elem == GgufValueType::kString ? 8 : ScalarSize(elem);
    if (count > reader_.remaining() / min_elem_bytes) {
      return reader_.Error(
          absl::StrCat("array '", key, "' claims ", count, " elements, more than the file holds"),
          count_at);
    }
    std::string what = absl::StrCat("element of '", key, "'");
    if (elem == GgufValueType::kString) {
      std::vector<std::string> items;
      items.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        TESSERA_ASSIGN_OR_RETURN(
            std::string s, reader_.ReadString(absl::StrCat("element ", i, " of '", key, "'")));
        items.push_back(std::move(s));
      }
      value.value = std::move(items);
    } else if (elem == GgufValueType::kFloat32 || elem == GgufValueType::kFloat64) {
      std::vector<double> items;
      items.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        GgufValue item;
        TESSERA_RETURN_IF_ERROR(ReadScalarInto(key, elem, item));
        items.push_back(std::get<double>(item.value));
      }
      value.value = std::move(items);
    } else if (elem == GgufValueType::kBool) {
      std::vector<bool> items;
      items.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        GgufValue item;
        TESSERA_RETURN_IF_ERROR(ReadScalarInto(key, elem, item));
        items.push_back(std::get<bool>(item.value));
      }
      value.value = std::move(items);
    } else {
      std::vector<int64_t> items;
      items.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        TESSERA_ASSIGN_OR_RETURN(int64_t v, ReadInteger(elem, what));
        items.push_back(v);
      }
      value.value = std::move(items);
    }
    return absl::OkStatus();
  }

  absl::Status ReadAlignment() {
    auto it = file_.metadata_.find("general.alignment");
    if (it == file_.metadata_.end()) return absl::OkStatus();
    const GgufValue& v = it->second;
    const int64_t* alignment = std::get_if<int64_t>(&v.value);
    if (v.type == GgufValueType::kArray || alignment == nullptr) {
      return reader_.Error("general.alignment is not an integer", alignment_at_);
    }
    if (*alignment <= 0 || *alignment > static_cast<int64_t>(kMaxAlignment) ||
        (*alignment & (*alignment - 1)) != 0) {
      return reader_.Error(absl::StrCat("general.alignment ", *alignment,
                                        " is not a power of two up to ", kMaxAlignment),
                           alignment_at_);
    }
    file_.alignment_ = static_cast<uint64_t>(*alignment);
    return absl::OkStatus();
  }

  absl::Status ReadTensorInfo(uint64_t index) {
    uint64_t start = reader_.offset();
    GgufTensor tensor;
    TESSERA_ASSIGN_OR_RETURN(tensor.name,
                             reader_.ReadString(absl::StrCat("name of tensor ", index)));
    if (tensor.name.empty())
      return reader_.Error(absl::StrCat("tensor ", index, " has an empty name"), start);
    if (file_.tensor_index_.contains(tensor.name)) {
      return reader_.Error(absl::StrCat("duplicate tensor '", tensor.name, "'"), start);
    }
    uint64_t dims_at = reader_.offset();
    TESSERA_ASSIGN_OR_RETURN(uint32_t n_dims, reader_.Read<uint32_t>(absl::StrCat(
                                                  "dimension count of '", tensor.name, "'")));
    if (n_dims == 0 || n_dims > kMaxTensorDims) {
      return reader_.Error(absl::StrCat("tensor '", tensor.name, "' has ", n_dims,
                                        " dimensions (1 to ", kMaxTensorDims, " allowed)"),
                           dims_at);
    }
    // Element counts are bounded so that their product cannot overflow int64.
    constexpr int64_t kMaxElements = int64_t{1} << 40;
    int64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim_at = reader_.offset();
      TESSERA_ASSIGN_OR_RETURN(uint64_t dim, reader_.Read<uint64_t>(absl::StrCat(
                                                 "dimension ", d, " of '", tensor.name, "'")));
      if (dim == 0 || dim > static_cast<uint64_t>(kMaxElements) ||
          elements > kMaxElements / static_cast<int64_t>(dim)) {
        return reader_.Error(absl::StrCat("tensor '", tensor.name, "' dimension ", d, " is ", dim,
                                          ", outside 1..", kMaxElements, " elements in total"),
                             dim_at);
      }
      elements *= static_cast<int64_t>(dim);
      tensor.shape.push_back(static_cast<int64_t>(dim));
    }
    tensor.num_elements = elements;
    uint64_t type_at = reader_.offset();
    TESSERA_ASSIGN_OR_RETURN(uint32_t raw_type,
                             reader_.Read<uint32_t>(absl::StrCat("type of '", tensor.name, "'")));
    std::optional<kernels::TensorTypeInfo> info = kernels::FindTensorType(raw_type);
    if (!info.has_value()) {
      return reader_.Error(
          absl::StrCat("tensor '", tensor.name, "' has unsupported type ", raw_type), type_at);
    }
    tensor.type = info->type;
    if (tensor.shape[0] % info->block_elements != 0) {
      return reader_.Error(
          absl::StrCat("tensor '", tensor.name, "' of type ", info->name, " has rows of ",
                       tensor.shape[0], " elements, not a multiple of its block size ",
                       info->block_elements),
          dims_at + 4);  // Where dimension 0 is.
    }
    uint64_t offset_at = reader_.offset();
    TESSERA_ASSIGN_OR_RETURN(
        tensor.offset, reader_.Read<uint64_t>(absl::StrCat("data offset of '", tensor.name, "'")));
    if (tensor.offset % file_.alignment_ != 0) {
      return reader_.Error(absl::StrCat("tensor '", tensor.name, "' data offset ", tensor.offset,
                                        " is not aligned to ", file_.alignment_),
                           offset_at);
    }
    file_.tensor_index_.emplace(tensor.name, file_.tensors_.size());
    file_.tensors_.push_back(std::move(tensor));
    return absl::OkStatus();
  }

  absl::Status PlaceTensorData(const std::vector<uint64_t>& descriptor_offsets) {
    uint64_t alignment = file_.alignment_;
    uint64_t data_start = (reader_.offset() + alignment - 1) / alignment * alignment;
    if (data_start > bytes_.size()) {
      if (file_.tensors_.empty()) return absl::OkStatus();
      return reader_.Error("truncated before the tensor data section", reader_.offset());
    }
    uint64_t data_size = bytes_.size() - data_start;
    // Sorted by offset, tensors must not overlap each other.
    std::vector<size_t> order(file_.tensors_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return file_.tensors_[a].offset < file_.tensors_[b].offset;
    });
    uint64_t previous_end = 0;
    const GgufTensor* previous = nullptr;
    for (size_t i : order) {
      GgufTensor& tensor = file_.tensors_[i];
      kernels::TensorTypeInfo info = kernels::GetTensorTypeInfo(tensor.type);
      uint64_t bytes = static_cast<uint64_t>(tensor.num_elements / info.block_elements) *
                       static_cast<uint64_t>(info.block_bytes);
      if (tensor.offset > data_size || bytes > data_size - tensor.offset) {
        // No end offset in the message: offset + bytes can wrap for a hostile offset.
        return reader_.Error(
            absl::StrCat("tensor '", tensor.name, "' data (", bytes, " bytes at offset ",
                         tensor.offset, ") runs past the end of the ", data_size,
                         "-byte data section (file truncated?)"),
            descriptor_offsets[i]);
      }
      if (previous != nullptr && tensor.offset < previous_end) {
        return reader_.Error(
            absl::StrCat("tensor '", tensor.name, "' overlaps tensor '", previous->name, "'"),
            descriptor_offsets[i]);
      }
      tensor.data = bytes_.subspan(data_start + tensor.offset, bytes);
      previous_end = tensor.offset + bytes;
      previous = &tensor;
    }
    return absl::OkStatus();
  }

  GgufFile& file_;
  std::span<const uint8_t> bytes_;
  Reader reader_;
  uint64_t alignment_at_ = 0;  // Where the general.alignment entry starts, for its errors.
};

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapping, MappedFile::Open(path));
  std::span<const uint8_t> bytes = mapping->bytes();
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, Parse(bytes, path));
  file->mapping_ = std::move(mapping);
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::span<const uint8_t> bytes,
                                                          std::string source_name) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->source_name_ = std::move(source_name);
  GgufParser parser(*file, bytes);
  TESSERA_RETURN_IF_ERROR(parser.Run());
  return file;
}

absl::StatusOr<const GgufValue*> GgufFile::Find(absl::string_view key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) {
    return absl::NotFoundError(absl::StrCat(source_name_, ": metadata key '", key, "' is missing"));
  }
  return &it->second;
}

namespace {
absl::Status WrongType(const std::string& source, absl::string_view key, absl::string_view want) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": metadata key '", key, "' is not ", want));
}
}  // namespace

absl::StatusOr<int64_t> GgufFile::GetInt(absl::string_view key) const {
  TESSERA_ASSIGN_OR_RETURN(const GgufValue* v, Find(key));
  if (!IsIntegerType(v->type)) return WrongType(source_name_, key, "an integer");
  return std::get<int64_t>(v->value);
}

absl::StatusOr<double> GgufFile::GetFloat(absl::string_view key) const {
  TESSERA_ASSIGN_OR_RETURN(const GgufValue* v, Find(key));
  if (IsIntegerType(v->type)) return static_cast<double>(std::get<int64_t>(v->value));
  if (v->type != GgufValueType::kFloat32 && v->type != GgufValueType::kFloat64) {
    return WrongType(source_name_, key, "a number");
  }
  return std::get<double>(v->value);
}

absl::StatusOr<bool> GgufFile::GetBool(absl::string_view key) const {
  TESSERA_ASSIGN_OR_RETURN(const GgufValue* v, Find(key));
  if (v->type != GgufValueType::kBool) return WrongType(source_name_, key, "a bool");
  return std::get<bool>(v->value);
}

absl::StatusOr<std::string> GgufFile::GetString(absl::string_view key) const {
  TESSERA_ASSIGN_OR_RETURN(const GgufValue* v, Find(key));
  if (v->type != GgufValueType::kString) return WrongType(source_name_, key, "a string");
  return std::get<std::string>(v->value);
}

absl::StatusOr<std::span<const std::string>> GgufFile::GetStringArray(absl::string_view key) const {
  TESSERA_ASSIGN_OR_RETURN(const GgufValue* v, Find(key));
  if (v->type != GgufValueType::kArray || v->array_type != GgufValueType::kString) {
    return WrongType(source_name_, key, "an array of strings");
  }
  return std::span<const std::string>(std::get<std::vector<std::string>>(v->value));
}

absl::StatusOr<std::span<const int64_t>> GgufFile::GetIntArray(absl::string_view key) const {
  TESSERA_ASSIGN_OR_RETURN(const GgufValue* v, Find(key));
  if (v->type != GgufValueType::kArray || !IsIntegerType(v->array_type)) {
    return WrongType(source_name_, key, "an array of integers");
  }
  return std::span<const int64_t>(std::get<std::vector<int64_t>>(v->value));
}

const GgufTensor* GgufFile::FindTensor(absl::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace tessera::engine
