#include "scheduler/prefix_index.h"

#include <catch2/catch.hpp>
#include <vector>

namespace tessera::scheduler {
namespace {

using Hashes = std::vector<uint64_t>;

TEST_CASE("PrefixIndex: batches apply in sequence; a gap or a new epoch asks for a snapshot",
          "[scheduler]") {
  PrefixIndex index;
  // A worker the index has never seen: snapshot first.
  CHECK_FALSE(index.Apply("w", 7, 1, Hashes{1}, {}));
  index.Snapshot("w", 7, 4, Hashes{1, 2});
  CHECK(index.held("w") == 2);
  CHECK(index.Apply("w", 7, 5, Hashes{3}, Hashes{1}));
  CHECK(index.held("w") == 2);
  CHECK(index.LeadingOverlap("w", Hashes{2, 3, 9}) == 2);
  CHECK(index.LeadingOverlap("w", Hashes{1, 2}) == 0);  // Leading: 1 is gone.
  // A missed batch (6) is detected and nothing is applied.
  CHECK_FALSE(index.Apply("w", 7, 7, Hashes{4}, {}));
  CHECK(index.LeadingOverlap("w", Hashes{2, 3, 4}) == 2);
  // A restarted worker (new epoch) is not trusted until it sends a snapshot.
  CHECK_FALSE(index.Apply("w", 8, 1, {}, {}));
  index.Snapshot("w", 8, 0, Hashes{});
  CHECK(index.held("w") == 0);
  CHECK(index.Apply("w", 8, 1, Hashes{5}, {}));
  index.RemoveWorker("w");
  CHECK(index.held("w") == 0);
  CHECK(index.LeadingOverlap("w", Hashes{5}) == 0);
}

TEST_CASE("PickByOverlapAndLoad: overlap wins until load outweighs it", "[scheduler]") {
  std::vector<double> load = {100, 0};
  std::vector<int32_t> overlap = {512, 0};
  CHECK(PickByOverlapAndLoad(load, overlap, 0, {.load_weight = 1, .overlap_weight = 1}) == 0);
  load[0] = 600;
  CHECK(PickByOverlapAndLoad(load, overlap, 0, {.load_weight = 1, .overlap_weight = 1}) == 1);
  // Load only.
  CHECK(PickByOverlapAndLoad(load, overlap, 0, {.load_weight = 1, .overlap_weight = 0}) == 1);
  load = {0, 0};
  overlap = {0, 0};
  CHECK(PickByOverlapAndLoad(load, overlap, 1, {}) == 1);  // Ties rotate.
}

}  // namespace
}  // namespace tessera::scheduler
