#include <catch2/catch.hpp>
#include <map>

#include "kvcache/block_store.h"
#include "kvcache/consistent_hash_ring.h"

namespace tessera::kvcache {
namespace {

TEST_CASE("ConsistentHashRing: owners spread, and a leaving server moves only its keys",
          "[kvcache]") {
  ConsistentHashRing three({"a:1", "b:1", "c:1"});
  ConsistentHashRing two({"a:1", "c:1"});
  std::map<std::string, int> counts;
  int moved_wrongly = 0;
  for (uint64_t key = 0; key < 3000; ++key) {
    std::string owner = *three.Owner(key * 0x9e3779b97f4a7c15ULL);
    ++counts[owner];
    if (owner != "b:1" && *two.Owner(key * 0x9e3779b97f4a7c15ULL) != owner) ++moved_wrongly;
  }
  for (const auto& [node, n] : counts) CHECK(n > 600);  // Roughly a third each.
  CHECK(moved_wrongly == 0);
  CHECK_FALSE(ConsistentHashRing({}).Owner(1).has_value());
}

TEST_CASE("BlockStore: keeps within its capacity, evicting the least recently used",
          "[kvcache]") {
  BlockStore store(300);
  CHECK(store.Put(1, std::string(100, 'a')));
  CHECK(store.Put(2, std::string(100, 'b')));
  CHECK(store.Put(3, std::string(100, 'c')));
  CHECK(store.Get(1).has_value());          // 1 is now the most recently used.
  CHECK(store.Put(4, std::string(100, 'd')));  // Evicts 2.
  CHECK_FALSE(store.Get(2).has_value());
  CHECK(*store.Get(1) == std::string(100, 'a'));
  CHECK(store.blocks() == 3);
  CHECK(store.bytes() == 300);
  CHECK(store.evicted() == 1);
  CHECK_FALSE(store.Put(9, std::string(301, 'x')));
}

}  // namespace
}  // namespace tessera::kvcache
