#include "engine/server/handoff_registry.h"

#include <catch2/catch.hpp>
#include <thread>

namespace tessera::engine::server {
namespace {

TEST_CASE("HandoffRegistry: a handoff finishes when every layer is ready and the first token "
          "exists", "[server]") {
  HandoffRegistry registry(2);
  REQUIRE(registry.Open("h", 20).ok());
  CHECK(registry.Open("h", 20).code() == absl::StatusCode::kAlreadyExists);
  std::vector<kvcache::BlockId> blocks = {7, 3};
  registry.Progress("h", 0, 20, blocks);
  auto view = registry.Wait("h", 0, absl::ZeroDuration()).value();
  CHECK_FALSE(view.finished);
  CHECK(view.layer_ready == std::vector<int32_t>{20, 0});
  CHECK(view.blocks == blocks);
  registry.Finish("h", {42});
  CHECK_FALSE(registry.Wait("h", 0, absl::ZeroDuration())->finished);  // Layer 1 not ready.
  registry.Progress("h", 1, 20, blocks);
  view = registry.Wait("h", 0, absl::ZeroDuration()).value();
  CHECK(view.finished);
  CHECK(view.generated == std::vector<int32_t>{42});
}

TEST_CASE("HandoffRegistry: waiters wake on progress and see a closed handoff as closed",
          "[server]") {
  HandoffRegistry registry(1);
  // Waiting for a handoff that never opens is NotFound after the timeout.
  CHECK(registry.Wait("missing", 0, absl::Milliseconds(10)).status().code() ==
        absl::StatusCode::kNotFound);
  REQUIRE(registry.Open("h", 4).ok());
  const int64_t seen = registry.Wait("h", 0, absl::ZeroDuration())->version;
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    registry.Progress("h", 0, 2, std::vector<kvcache::BlockId>{1});
  });
  auto view = registry.Wait("h", seen, absl::Seconds(10)).value();
  producer.join();
  CHECK(view.layer_ready[0] == 2);
  CHECK(view.version > seen);
  registry.Close("h");
  CHECK(registry.open_count() == 0);
  CHECK(registry.Wait("h", view.version, absl::Seconds(10))->closed);
}

}  // namespace
}  // namespace tessera::engine::server
