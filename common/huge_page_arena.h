// Memory for large, long-lived buffers that the kernels stream through every step: packed
// weights and the KV cache. With 4 KiB pages, streaming ~100 MB of weights per decode step
// misses the TLB on nearly every page; backed by transparent huge pages (2 MiB) the same walk
// touches ~50 entries. Measured on the default model: decode at batch 1 went from 175-220 to
// 230-240 tokens/s (docs/PERFORMANCE.md).
//
// Allocations are 64-byte-aligned, zero-filled slices of 2 MiB-aligned chunks that are
// madvise(MADV_HUGEPAGE)d, so small matrices share huge pages instead of each rounding up to
// one. A chunk is unmapped when its last slice is freed; space inside a chunk is never reused,
// which suits buffers that live as long as a model. Where the kernel has transparent huge pages
// off, the memory is ordinary anonymous memory and everything still works.
// Thread-safe.
#ifndef TESSERA_COMMON_HUGE_PAGE_ARENA_H_
#define TESSERA_COMMON_HUGE_PAGE_ARENA_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tessera {

class HugePageArena {
 public:
  static constexpr size_t kHugePage = size_t{2} << 20;
  // Allocations share chunks of this size; a larger one gets a chunk of its own.
  static constexpr size_t kChunkBytes = size_t{32} << 20;

  // The process's arena.
  static HugePageArena& Global();

  HugePageArena() = default;
  ~HugePageArena();
  HugePageArena(const HugePageArena&) = delete;
  HugePageArena& operator=(const HugePageArena&) = delete;

  // A zero-filled, 64-byte-aligned block of at least `bytes` (> 0), or nullptr if the memory
  // cannot be had.
  uint8_t* Allocate(size_t bytes);
  // Returns a block from Allocate(); nullptr is ignored.
  void Free(uint8_t* block);

  // Chunks currently mapped (for tests).
  size_t chunks() const;

  struct Deleter {
    void operator()(uint8_t* block) const { Global().Free(block); }
  };

 private:
  struct Chunk {
    size_t size = 0;
    size_t used = 0;
    int64_t live = 0;  // Blocks handed out and not yet freed.
  };
  static uint8_t* MapChunk(size_t bytes);

  mutable absl::Mutex mu_;
  std::map<uintptr_t, Chunk> chunks_ ABSL_GUARDED_BY(mu_);  // By base address.
  uintptr_t open_chunk_ ABSL_GUARDED_BY(mu_) = 0;          // Shared chunk with room, or 0.
};

// A block of the global arena, freed with it.
using HugePageBlock = std::unique_ptr<uint8_t[], HugePageArena::Deleter>;

// Allocate() from the global arena; null if the memory cannot be had.
inline HugePageBlock AllocateHugePageBlock(size_t bytes) {
  return HugePageBlock(HugePageArena::Global().Allocate(bytes));
}

}  // namespace tessera

#endif  // TESSERA_COMMON_HUGE_PAGE_ARENA_H_
