// A POSIX shared-memory region (shm_open + mmap), used to let a worker's KV cache be read
// directly by another process on the same host: the decode side copies handed-off blocks
// straight out of the prefill side's cache, with no intermediate copy or socket.
// The creating process owns the name and unlinks it when the region is destroyed. Names
// embed the creator's pid so that regions left by a killed process are swept by the next
// Create() on the host.
// Thread-safety: immutable after construction; the bytes themselves are not synchronized.
#ifndef TESSERA_KVCACHE_SHARED_MEMORY_H_
#define TESSERA_KVCACHE_SHARED_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tessera::kvcache {

class SharedMemoryRegion {
 public:
  // Creates a fresh zero-filled region of `bytes`, named "/tessera-<tag>-<pid>-<n>".
  static absl::StatusOr<std::unique_ptr<SharedMemoryRegion>> Create(absl::string_view tag,
                                                                    size_t bytes);
  // Maps an existing region read-only. NotFound if it is gone, FailedPrecondition if its
  // size differs from `expected_bytes`.
  static absl::StatusOr<std::unique_ptr<SharedMemoryRegion>> OpenReadOnly(
      absl::string_view name, size_t expected_bytes);

  ~SharedMemoryRegion();
  SharedMemoryRegion(const SharedMemoryRegion&) = delete;
  SharedMemoryRegion& operator=(const SharedMemoryRegion&) = delete;

  const std::string& name() const { return name_; }
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  SharedMemoryRegion(std::string name, uint8_t* data, size_t size, bool owner)
      : name_(std::move(name)), data_(data), size_(size), owner_(owner) {}

  std::string name_;
  uint8_t* data_;
  size_t size_;
  bool owner_;
};

}  // namespace tessera::kvcache

#endif  // TESSERA_KVCACHE_SHARED_MEMORY_H_
