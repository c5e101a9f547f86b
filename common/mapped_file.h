// A read-only memory map of a whole file. Model weights are mapped rather than read so that
// several workers on one host share one copy in the page cache, and loading is instant.
// Thread-safe after construction (the mapping is immutable).
#ifndef TESSERA_COMMON_MAPPED_FILE_H_
#define TESSERA_COMMON_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace tessera {

class MappedFile {
 public:
  // Maps `path` read-only. Errors name the path and the failing system call.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace tessera

#endif  // TESSERA_COMMON_MAPPED_FILE_H_
