#include "kvcache/block_manager.h"

#include <catch2/catch.hpp>
#include <vector>

namespace tessera::kvcache {
namespace {

// Test double of the KV mover: each block's "content" is one number, copied like KV would be.
class FakeMover final : public KvBlockMover {
 public:
  FakeMover(int32_t device, int32_t host) : device_content(device, -1), host_content(host, -1) {}
  void DeviceToHost(BlockId d, BlockId h) override { host_content[h] = device_content[d]; ++moves; }
  void HostToDevice(BlockId h, BlockId d) override { device_content[d] = host_content[h]; ++moves; }
  void DeviceToDevice(BlockId from, BlockId to) override {
    device_content[to] = device_content[from];
    ++moves;
  }
  std::vector<int64_t> device_content, host_content;
  int moves = 0;
};

std::vector<BlockHash> Hashes(std::vector<int32_t> tokens, int32_t block_size = 2) {
  return PrefixBlockHashes(tokens, block_size, ModelHashSeed("test-model"), 1000);
}

TEST_CASE("Block hashes chain: equal prefixes hash equal, a changed token changes every later "
          "block, models never collide", "[kvcache]") {
  auto a = Hashes({1, 2, 3, 4, 5, 6});
  auto b = Hashes({1, 2, 3, 4, 9, 9, 7});
  REQUIRE(a.size() == 3);
  REQUIRE(b.size() == 3);
  CHECK(a[0] == b[0]);
  CHECK(a[1] == b[1]);
  CHECK(a[2] != b[2]);
  auto c = Hashes({1, 9, 3, 4});
  CHECK(c[0] != a[0]);
  CHECK(c[1] != a[1]);  // Same tokens in block 1, different history.
  CHECK(PrefixBlockHashes(std::vector<int32_t>{1, 2}, 2, ModelHashSeed("other"), 9)[0] != a[0]);
  CHECK(PrefixBlockHashes(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, 2, ModelHashSeed("test-model"), 2).size() == 2);
}

TEST_CASE("BlockManager: a published prefix is shared by reference and counted as hits",
          "[kvcache]") {
  FakeMover mover(4, 0);
  BlockManager manager({.device_blocks = 4, .host_blocks = 0, .prefix_caching = true}, &mover);
  auto hashes = Hashes({1, 2, 3, 4});
  BlockId a = manager.Allocate().value(), b = manager.Allocate().value();
  manager.Publish(a, hashes[0]);
  manager.Publish(b, hashes[1]);
  std::vector<BlockId> shared = manager.AcquirePrefix(hashes);
  CHECK(shared == std::vector<BlockId>{a, b});
  CHECK(manager.references(a) == 2);
  CHECK(manager.IsShared(a));
  CHECK(manager.stats().device_hits == 2);
  manager.Release(shared);
  manager.Release(std::vector<BlockId>{a, b});
  // Unreferenced but cached: not free for new content until evicted, yet allocatable.
  CHECK(manager.referenced() == 0);
  CHECK(manager.cached_device() == 2);
  CHECK(manager.AcquirePrefix(hashes).size() == 2);
}

TEST_CASE("BlockManager: eviction keeps the most recently used blocks", "[kvcache]") {
  FakeMover mover(3, 0);
  BlockManager manager({.device_blocks = 3}, &mover);
  auto h = Hashes({1, 1, 2, 2, 3, 3});
  // Three published, released blocks; block for h[0] is used again last.
  std::vector<BlockId> blocks;
  for (int i = 0; i < 3; ++i) {
    blocks.push_back(manager.Allocate().value());
    manager.Publish(blocks[i], PrefixBlockHashes(std::vector<int32_t>{i, i}, 2, 7, 1)[0]);
  }
  for (BlockId b : blocks) manager.Release(b);
  auto again = manager.AcquirePrefix(PrefixBlockHashes(std::vector<int32_t>{0, 0}, 2, 7, 1));
  REQUIRE(again.size() == 1);
  manager.Release(again);
  // Two new blocks evict the two least recently used (contents 1 and 2), not content 0.
  BlockId x = manager.Allocate().value(), y = manager.Allocate().value();
  CHECK(manager.stats().evicted_device == 2);
  CHECK(manager.AcquirePrefix(PrefixBlockHashes(std::vector<int32_t>{0, 0}, 2, 7, 1)).size() == 1);
  CHECK(manager.AcquirePrefix(PrefixBlockHashes(std::vector<int32_t>{1, 1}, 2, 7, 1)).empty());
  CHECK(manager.AcquirePrefix(PrefixBlockHashes(std::vector<int32_t>{2, 2}, 2, 7, 1)).empty());
  // Every block referenced: allocation fails without touching anything.
  CHECK(manager.Allocate().status().code() == absl::StatusCode::kResourceExhausted);
  manager.Release(x);
  manager.Release(y);
}

TEST_CASE("BlockManager: evicted blocks move to the host tier and come back with their content",
          "[kvcache]") {
  FakeMover mover(2, 2);
  BlockManager manager({.device_blocks = 2, .host_blocks = 2}, &mover);
  auto hashes = Hashes({5, 6, 7, 8});
  BlockId a = manager.Allocate().value(), b = manager.Allocate().value();
  mover.device_content[a] = 500;
  mover.device_content[b] = 600;
  manager.Publish(a, hashes[0]);
  manager.Publish(b, hashes[1]);
  manager.Release(std::vector<BlockId>{a, b});
  // Two unrelated allocations push both cached blocks to the host.
  BlockId x = manager.Allocate().value(), y = manager.Allocate().value();
  mover.device_content[x] = mover.device_content[y] = -7;
  CHECK(manager.stats().offloaded == 2);
  CHECK(manager.cached_host() == 2);
  manager.Release(std::vector<BlockId>{x, y});
  // The prefix comes back from the host, same content, in fresh device blocks.
  std::vector<BlockId> restored = manager.AcquirePrefix(hashes);
  REQUIRE(restored.size() == 2);
  CHECK(mover.device_content[restored[0]] == 500);
  CHECK(mover.device_content[restored[1]] == 600);
  CHECK(manager.stats().host_hits == 2);
  CHECK(manager.stats().restored == 2);
  manager.Release(restored);
  CHECK(manager.referenced() == 0);
}

TEST_CASE("BlockManager: a writer to a shared block gets its own copy", "[kvcache]") {
  FakeMover mover(4, 0);
  BlockManager manager({.device_blocks = 4}, &mover);
  BlockId a = manager.Allocate().value();
  mover.device_content[a] = 42;
  CHECK(manager.MakeExclusive(a).value() == a);  // Not shared: written in place.
  manager.AddReference(a);                        // A second sequence shares it.
  BlockId mine = manager.MakeExclusive(a).value();
  CHECK(mine != a);
  CHECK(mover.device_content[mine] == 42);
  CHECK(manager.references(a) == 1);
  CHECK(manager.stats().copied_on_write == 1);
  manager.Release(a);
  manager.Release(mine);
  CHECK(manager.referenced() == 0);
}

TEST_CASE("BlockManager: with prefix caching off nothing is shared or cached", "[kvcache]") {
  BlockManager manager({.device_blocks = 2, .host_blocks = 0, .prefix_caching = false}, nullptr);
  auto hashes = Hashes({1, 2});
  BlockId a = manager.Allocate().value();
  manager.Publish(a, hashes[0]);
  CHECK(manager.AcquirePrefix(hashes).empty());
  manager.Release(a);
  CHECK(manager.cached_device() == 0);
  CHECK(manager.unreferenced() == 2);
}

}  // namespace
}  // namespace tessera::kvcache

namespace tessera::kvcache {
namespace {

TEST_CASE("BlockManager: changes report what became held and what is gone, net", "[kvcache]") {
  FakeMover mover(2, 1);
  BlockManager manager({.device_blocks = 2, .host_blocks = 1}, &mover);
  auto h = Hashes({1, 1, 2, 2, 3, 3});
  BlockId a = manager.Allocate().value();
  manager.Publish(a, h[0]);
  BlockManager::Changes changes = manager.TakeChanges();
  CHECK(changes.stored == std::vector<BlockHash>{h[0]});
  CHECK(changes.removed.empty());
  manager.Release(a);
  // Two allocations: h[0] moves to the host (still held), nothing reported.
  BlockId x = manager.Allocate().value(), y = manager.Allocate().value();
  CHECK(manager.stats().offloaded == 1);
  changes = manager.TakeChanges();
  CHECK(changes.stored.empty());
  CHECK(changes.removed.empty());
  // Publishing and losing h[1] within one interval nets out; losing h[0] is reported.
  manager.Publish(x, h[1]);
  manager.Release(x);
  BlockId z = manager.Allocate().value();  // Evicts h[1] to the host, which drops h[0].
  changes = manager.TakeChanges();
  CHECK(changes.stored == std::vector<BlockHash>{h[1]});
  CHECK(changes.removed == std::vector<BlockHash>{h[0]});
  CHECK(manager.HeldHashes() == std::vector<BlockHash>{h[1]});
  CHECK(manager.held_hashes() == 1);
  manager.Release(y);
  manager.Release(z);
}

}  // namespace
}  // namespace tessera::kvcache

namespace tessera::kvcache {
namespace {

TEST_CASE("BlockManager: a swapped-out sequence's blocks wait on the host and come back intact",
          "[kvcache]") {
  FakeMover mover(3, 2);
  BlockManager manager({.device_blocks = 3, .host_blocks = 2}, &mover);
  BlockId a = manager.Allocate().value(), b = manager.Allocate().value();
  mover.device_content[a] = 11;
  mover.device_content[b] = 22;
  std::vector<BlockId> held = {a, b};
  std::vector<BlockId> host = manager.SwapOut(held).value();
  CHECK(manager.referenced() == 0);
  CHECK(manager.swapped_host() == 2);
  // The host tier is full of swapped blocks: a third cannot go, and nothing changes.
  BlockId c = manager.Allocate().value();
  CHECK(manager.SwapOut(std::vector<BlockId>{c}).status().code() ==
        absl::StatusCode::kResourceExhausted);
  CHECK(manager.references(c) == 1);
  // Two device blocks are needed to come back; with only two unreferenced it works.
  std::vector<BlockId> back = manager.SwapIn(host).value();
  REQUIRE(back.size() == 2);
  CHECK(mover.device_content[back[0]] == 11);
  CHECK(mover.device_content[back[1]] == 22);
  CHECK(manager.swapped_host() == 0);
  CHECK(manager.SwapIn(std::vector<BlockId>{0, 1}).status().code() ==
        absl::StatusCode::kResourceExhausted);  // No device room left.
  manager.Release(back);
  manager.Release(c);
  CHECK(manager.referenced() == 0);
  CHECK(manager.stats().swapped_out == 2);
  CHECK(manager.stats().swapped_in == 2);
}

}  // namespace
}  // namespace tessera::kvcache
