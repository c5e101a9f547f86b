#include "kvcache/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>

#include "kvcache/paged_kv_cache.h"

namespace tessera::kvcache {
namespace {

KvCacheShape SmallShape() {
  KvCacheShape shape;
  shape.num_layers = 3;
  shape.num_kv_heads = 2;
  shape.head_dim = 8;
  shape.block_size = 4;
  shape.num_blocks = 5;
  return shape;
}

TEST_CASE("PagedKvCache: a shared cache is readable from another process at the layout's offsets",
          "[kvcache]") {
  auto cache = PagedKvCache::Create(SmallShape(), /*shared=*/true).value();
  REQUIRE_FALSE(cache->shared_memory_name().empty());
  const KvCacheLayout layout = cache->layout();
  cache->keys(2, 3)[5] = 0x1234;
  cache->values(1, 4)[0] = 0x4321;

  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // A separate process maps the region by name, as a decode worker does.
    auto view = SharedMemoryRegion::OpenReadOnly(cache->shared_memory_name(), layout.total_bytes());
    if (!view.ok()) _exit(2);
    uint16_t key, value;
    std::memcpy(&key, (*view)->data() + layout.keys_offset(2, 3) + 5 * sizeof(uint16_t), 2);
    std::memcpy(&value, (*view)->data() + layout.values_offset(1, 4), 2);
    _exit(key == 0x1234 && value == 0x4321 ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("SharedMemoryRegion: opening checks the size and a missing name is NotFound",
          "[kvcache]") {
  auto region = SharedMemoryRegion::Create("test", 4096).value();
  CHECK(SharedMemoryRegion::OpenReadOnly(region->name(), 4096).ok());
  CHECK(SharedMemoryRegion::OpenReadOnly(region->name(), 8192).status().code() ==
        absl::StatusCode::kFailedPrecondition);
  std::string name = region->name();
  region.reset();  // The owner unlinks the name.
  CHECK(SharedMemoryRegion::OpenReadOnly(name, 4096).status().code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("SharedMemoryRegion: regions of dead processes are swept", "[kvcache]") {
  // A child creates a region and dies without unlinking it, as after kill -9.
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    auto region = SharedMemoryRegion::Create("sweeptest", 4096);
    if (!region.ok()) _exit(1);
    _exit(0);  // Skips destructors: the name stays.
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WEXITSTATUS(status) == 0);
  const std::string prefix = "tessera-sweeptest-" + std::to_string(child) + "-";
  auto leftovers = [&] {
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
      n += entry.path().filename().string().rfind(prefix, 0) == 0;
    }
    return n;
  };
  REQUIRE(leftovers() == 1);
  auto fresh = SharedMemoryRegion::Create("sweeptest", 4096).value();
  CHECK(leftovers() == 0);
  CHECK(std::filesystem::exists("/dev/shm" + fresh->name()));
}

}  // namespace
}  // namespace tessera::kvcache
