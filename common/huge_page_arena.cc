#include "common/huge_page_arena.h"

#include <sys/mman.h>

namespace tessera {
namespace {

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

}  // namespace

HugePageArena& HugePageArena::Global() {
  static HugePageArena* arena = new HugePageArena();  // Never destroyed: blocks outlive main.
  return *arena;
}

HugePageArena::~HugePageArena() {
  absl::MutexLock lock(&mu_);
  for (const auto& [base, chunk] : chunks_) munmap(reinterpret_cast<void*>(base), chunk.size);
}

uint8_t* HugePageArena::MapChunk(size_t bytes) {
  // Over-map by one huge page and trim, so the chunk starts on a huge-page boundary (THP only
  // backs aligned 2 MiB ranges).
  const size_t mapped = bytes + kHugePage;
  void* raw = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = RoundUp(start, kHugePage);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + mapped;
  if (end > aligned + bytes) {
    munmap(reinterpret_cast<void*>(aligned + bytes), end - aligned - bytes);
  }
  // Advice only: where THP is off this fails or does nothing, and 4 KiB pages serve.
  madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
  return reinterpret_cast<uint8_t*>(aligned);
}

uint8_t* HugePageArena::Allocate(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t size = RoundUp(bytes, 64);
  absl::MutexLock lock(&mu_);
  if (open_chunk_ != 0) {
    Chunk& open = chunks_[open_chunk_];
    if (open.size - open.used >= size) {
      uint8_t* block = reinterpret_cast<uint8_t*>(open_chunk_ + open.used);
      open.used += size;
      ++open.live;
      return block;
    }
  }
  const bool own = size > kChunkBytes / 2;  // Big blocks would waste most of a shared chunk.
  const size_t chunk_bytes = own ? RoundUp(size, kHugePage) : kChunkBytes;
  uint8_t* base = MapChunk(chunk_bytes);
  if (base == nullptr) return nullptr;
  const uintptr_t key = reinterpret_cast<uintptr_t>(base);
  chunks_[key] = Chunk{chunk_bytes, size, 1};
  // The previous open chunk, too full for this block, stays mapped until its last block goes.
  if (!own) open_chunk_ = key;
  return base;
}

void HugePageArena::Free(uint8_t* block) {
  if (block == nullptr) return;
  const uintptr_t address = reinterpret_cast<uintptr_t>(block);
  absl::MutexLock lock(&mu_);
  auto it = chunks_.upper_bound(address);
  if (it == chunks_.begin()) return;
  --it;
  Chunk& chunk = it->second;
  if (address >= it->first + chunk.size) return;
  if (--chunk.live > 0) return;
  // Unmapped even when open: its used pages are dirty, and blocks must come zero-filled.
  if (it->first == open_chunk_) open_chunk_ = 0;
  munmap(reinterpret_cast<void*>(it->first), chunk.size);
  chunks_.erase(it);
}

size_t HugePageArena::chunks() const {
  absl::MutexLock lock(&mu_);
  return chunks_.size();
}

}  // namespace tessera
