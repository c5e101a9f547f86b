// Reads GGUF model files (version 2 and 3): metadata key/values and tensor descriptors over a
// memory map. Every length, count, offset, size, alignment and type is validated before it is
// used; a corrupt, truncated or hostile file yields InvalidArgument naming the field and its
// byte offset, never a crash or an out-of-bounds read.
// Thread-safe after Open()/Parse() returns (the object is immutable).
#ifndef TESSERA_ENGINE_GGUF_GGUF_FILE_H_
#define TESSERA_ENGINE_GGUF_GGUF_FILE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/mapped_file.h"
#include "kernels/tensor_type.h"

namespace tessera::engine {

// GGUF's value type ids.
enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// One metadata value. Integers of every width are widened to int64 (uint64 values above
// INT64_MAX are rejected), floats to double; arrays keep their element type.
struct GgufValue {
  GgufValueType type;
  std::variant<int64_t, double, bool, std::string, std::vector<int64_t>, std::vector<double>,
               std::vector<std::string>, std::vector<bool>>
      value;
  GgufValueType array_type = GgufValueType::kUint8;  // Meaningful when type == kArray.
};

struct GgufTensor {
  std::string name;
  kernels::TensorType type;
  std::vector<int64_t> shape;  // GGUF order: shape[0] is the contiguous (row) dimension.
  int64_t num_elements = 0;
  uint64_t offset = 0;  // Relative to the start of the tensor data section.
  std::span<const uint8_t> data;

  int64_t rows() const { return num_elements / shape[0]; }
};

class GgufFile {
 public:
  // Maps and parses the file at `path`.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses bytes owned by the caller, which must outlive the returned object. `source_name`
  // appears in error messages.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(std::span<const uint8_t> bytes,
                                                         std::string source_name);

  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  const std::string& source_name() const { return source_name_; }
  uint64_t alignment() const { return alignment_; }

  bool Has(absl::string_view key) const { return metadata_.contains(key); }
  // Typed accessors: NotFound if the key is absent, InvalidArgument if it has another type.
  absl::StatusOr<int64_t> GetInt(absl::string_view key) const;
  absl::StatusOr<double> GetFloat(absl::string_view key) const;  // Accepts integers too.
  absl::StatusOr<bool> GetBool(absl::string_view key) const;
  absl::StatusOr<std::string> GetString(absl::string_view key) const;
  absl::StatusOr<std::span<const std::string>> GetStringArray(absl::string_view key) const;
  absl::StatusOr<std::span<const int64_t>> GetIntArray(absl::string_view key) const;
  const absl::flat_hash_map<std::string, GgufValue>& metadata() const { return metadata_; }

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* FindTensor(absl::string_view name) const;

 private:
  GgufFile() = default;
  absl::StatusOr<const GgufValue*> Find(absl::string_view key) const;

  std::unique_ptr<MappedFile> mapping_;  // Null when parsing caller-owned bytes.
  std::string source_name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  absl::flat_hash_map<std::string, GgufValue> metadata_;
  std::vector<GgufTensor> tensors_;
  absl::flat_hash_map<std::string, size_t> tensor_index_;

  friend class GgufParser;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_GGUF_GGUF_FILE_H_
