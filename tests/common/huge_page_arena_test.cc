#include "common/huge_page_arena.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <vector>

namespace tessera {
namespace {

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

TEST_CASE("small blocks share one aligned, zero-filled chunk", "[huge_page_arena]") {
  HugePageArena arena;
  uint8_t* a = arena.Allocate(100);
  uint8_t* b = arena.Allocate(1000);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(a) % HugePageArena::kHugePage == 0);
  CHECK(reinterpret_cast<uintptr_t>(b) % 64 == 0);
  CHECK(b >= a + 100);  // Blocks never overlap.
  CHECK(arena.chunks() == 1);
  CHECK(AllZero(a, 100));
  CHECK(AllZero(b, 1000));
  std::memset(a, 0xab, 100);
  std::memset(b, 0xcd, 1000);
  CHECK(a[99] == 0xab);  // Writing one block leaves the other alone.
  CHECK(b[0] == 0xcd);
  arena.Free(a);
  CHECK(arena.chunks() == 1);  // b still lives in it.
  arena.Free(b);
  CHECK(arena.chunks() == 0);
}

TEST_CASE("a chunk freed and mapped again comes back zero-filled", "[huge_page_arena]") {
  HugePageArena arena;
  uint8_t* a = arena.Allocate(4096);
  std::memset(a, 0xff, 4096);
  arena.Free(a);
  uint8_t* b = arena.Allocate(4096);
  REQUIRE(b != nullptr);
  CHECK(AllZero(b, 4096));
  arena.Free(b);
}

TEST_CASE("a large block gets a chunk of its own; a full chunk gives way to a new one",
          "[huge_page_arena]") {
  HugePageArena arena;
  const size_t big = HugePageArena::kChunkBytes + 12345;
  uint8_t* large = arena.Allocate(big);
  REQUIRE(large != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(large) % HugePageArena::kHugePage == 0);
  CHECK(AllZero(large + big - 4096, 4096));
  large[big - 1] = 1;  // The whole block is mapped.
  CHECK(arena.chunks() == 1);

  std::vector<uint8_t*> blocks;
  const size_t quarter = HugePageArena::kChunkBytes / 4;
  for (int i = 0; i < 5; ++i) blocks.push_back(arena.Allocate(quarter));
  CHECK(arena.chunks() == 3);  // The large block's, a shared one of four blocks, and the fifth's.
  CHECK(blocks[4] != blocks[3] + quarter);
  arena.Free(large);
  CHECK(arena.chunks() == 2);
  for (uint8_t* block : blocks) arena.Free(block);
  CHECK(arena.chunks() == 0);
}

TEST_CASE("freeing null or an address the arena never gave is ignored", "[huge_page_arena]") {
  HugePageArena arena;
  uint8_t* a = arena.Allocate(64);
  arena.Free(nullptr);
  uint8_t outside = 0;
  arena.Free(&outside);
  CHECK(arena.chunks() == 1);
  arena.Free(a);
  CHECK(arena.chunks() == 0);
}

}  // namespace
}  // namespace tessera
