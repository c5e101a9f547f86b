#include "kvcache/block_allocator.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <set>

#include "kvcache/paged_kv_cache.h"

namespace tessera::kvcache {
namespace {

TEST_CASE("BlockAllocator: blocks are handed out once and come back when freed", "[kvcache]") {
  BlockAllocator allocator(8);
  auto a = allocator.Allocate(5).value();
  auto b = allocator.Allocate(3).value();
  std::set<BlockId> all(a.begin(), a.end());
  all.insert(b.begin(), b.end());
  CHECK(all.size() == 8);
  CHECK(*all.begin() == 0);
  CHECK(*all.rbegin() == 7);
  CHECK(allocator.num_free() == 0);

  SECTION("an allocation that does not fit takes nothing and says why") {
    auto c = allocator.Allocate(1);
    REQUIRE(absl::IsResourceExhausted(c.status()));
    CHECK(c.status().message().find("0 of 8 free") != std::string::npos);
    CHECK(allocator.num_free() == 0);
  }
  SECTION("freeing returns exactly those blocks") {
    allocator.Free(a);
    CHECK(allocator.num_free() == 5);
    auto c = allocator.Allocate(5).value();
    std::sort(a.begin(), a.end());
    std::sort(c.begin(), c.end());
    CHECK(a == c);
  }
}

TEST_CASE("PagedKvCache: blocks are disjoint across layers, blocks, keys and values", "[kvcache]") {
  KvCacheShape shape{
      .num_layers = 3, .num_kv_heads = 2, .head_dim = 4, .block_size = 5, .num_blocks = 7};
  auto cache = PagedKvCache::Create(shape).value();
  // Write a distinct value to every element through the accessors, then read all back.
  uint16_t next = 1;
  for (int l = 0; l < 3; ++l) {
    for (BlockId b = 0; b < 7; ++b) {
      for (int64_t i = 0; i < shape.block_elements(); ++i) {
        cache->keys(l, b)[i] = next++;
        cache->values(l, b)[i] = next++;
      }
    }
  }
  next = 1;
  for (int l = 0; l < 3; ++l) {
    for (BlockId b = 0; b < 7; ++b) {
      for (int64_t i = 0; i < shape.block_elements(); ++i) {
        REQUIRE(cache->keys(l, b)[i] == next++);
        REQUIRE(cache->values(l, b)[i] == next++);
      }
    }
  }
  CHECK(shape.bytes_per_block() == 5 * 8 * 2 * 2 * 3);
}

TEST_CASE("PagedKvCache: a bad shape names the field", "[kvcache]") {
  KvCacheShape shape{
      .num_layers = 3, .num_kv_heads = 2, .head_dim = 4, .block_size = 0, .num_blocks = 7};
  auto cache = PagedKvCache::Create(shape);
  REQUIRE(absl::IsInvalidArgument(cache.status()));
  CHECK(cache.status().message().find("block_size") != std::string::npos);
}

}  // namespace
}  // namespace tessera::kvcache
