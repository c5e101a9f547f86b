#include "scheduler/worker_selector.h"

#include <catch2/catch.hpp>
#include <vector>

namespace tessera::scheduler {
namespace {

TEST_CASE("SelectWorker: prefill goes to the worker with the fewest queued prompt tokens",
          "[scheduler]") {
  std::vector<WorkerLoadView> workers(3);
  workers[0].queued_prefill_tokens = 900;
  workers[1].queued_prefill_tokens = 100;
  workers[2].queued_prefill_tokens = 500;
  CHECK(SelectWorker(workers, WorkKind::kPrefill, 0) == 1u);
  // The router's own in-flight tokens count before the heartbeat catches up.
  workers[1].in_flight_prompt_tokens = 2000;
  CHECK(SelectWorker(workers, WorkKind::kPrefill, 0) == 2u);
}

TEST_CASE("SelectWorker: decode weighs running sequences and KV usage", "[scheduler]") {
  std::vector<WorkerLoadView> workers(2);
  workers[0].running_sequences = 4;
  workers[0].free_kv_blocks = 100;
  workers[0].total_kv_blocks = 100;
  workers[1].running_sequences = 2;
  workers[1].free_kv_blocks = 10;  // 90% used: 2 + 14.4 > 4.
  workers[1].total_kv_blocks = 100;
  CHECK(SelectWorker(workers, WorkKind::kDecode, 0) == 0u);
  workers[1].free_kv_blocks = 90;
  CHECK(SelectWorker(workers, WorkKind::kDecode, 0) == 1u);
}

TEST_CASE("SelectWorker: equal workers take turns and an empty pool has no choice",
          "[scheduler]") {
  std::vector<WorkerLoadView> workers(3);
  CHECK(SelectWorker(workers, WorkKind::kDecode, 0) == 0u);
  CHECK(SelectWorker(workers, WorkKind::kDecode, 1) == 1u);
  CHECK(SelectWorker(workers, WorkKind::kDecode, 5) == 2u);
  CHECK_FALSE(SelectWorker(std::span<const WorkerLoadView>(), WorkKind::kPrefill, 0).has_value());
}

}  // namespace
}  // namespace tessera::scheduler
