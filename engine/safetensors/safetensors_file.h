// Reader for Hugging Face safetensors files: an 8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, then the tensor bytes. The file is
// memory-mapped, and every header field is validated before use: a truncated, corrupt or
// hostile file gets an error naming the file, what is wrong and where (a byte offset, or the
// tensor), never a crash or an out-of-bounds read.
// Thread-safety: thread-safe after Open()/Parse() returns (the object is immutable).
#ifndef TESSERA_ENGINE_SAFETENSORS_SAFETENSORS_FILE_H_
#define TESSERA_ENGINE_SAFETENSORS_SAFETENSORS_FILE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/mapped_file.h"

namespace tessera::engine {

enum class SafetensorsDtype {
  kBool, kU8, kI8, kI16, kI32, kI64, kF8E4M3, kF8E5M2, kF16, kBF16, kF32, kF64
};

// Bytes per element.
int SafetensorsDtypeSize(SafetensorsDtype dtype);
absl::string_view SafetensorsDtypeName(SafetensorsDtype dtype);

struct SafetensorsTensor {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::kF32;
  std::vector<int64_t> shape;
  int64_t num_elements = 0;
  std::span<const uint8_t> data;  // Inside the file's data section.
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Parses bytes owned by the caller, which must outlive the returned object. `source_name`
  // appears in error messages.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Parse(std::span<const uint8_t> bytes,
                                                                std::string source_name);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& source_name() const { return source_name_; }
  // In file order (by data offset).
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* FindTensor(absl::string_view name) const;
  // The header's "__metadata__" (string to string), if any.
  const absl::flat_hash_map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor's values as floats (from F32, F16, BF16, F8_E4M3 or F8_E5M2; FP8 values are
  // returned as stored, before any block scale). NotFound if absent;
  // InvalidArgument, naming the tensor, for another dtype or a shape other than `shape`.
  absl::StatusOr<std::vector<float>> ReadFloats(absl::string_view name,
                                                std::span<const int64_t> shape) const;

 private:
  SafetensorsFile() = default;

  std::unique_ptr<MappedFile> mapping_;  // Null when parsing caller-owned bytes.
  std::string source_name_;
  std::vector<SafetensorsTensor> tensors_;
  absl::flat_hash_map<std::string, size_t> tensor_index_;
  absl::flat_hash_map<std::string, std::string> metadata_;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_SAFETENSORS_SAFETENSORS_FILE_H_
