// The expert rebalancer (EPLB) inside RoutedExperts: over a real Gloo group of two ranks
// (threads here), a hot expert gets a copy on each rank after a rebalance, the ranks' expert
// work evens out, and every output stays exactly what one process computes.
#include <catch2/catch.hpp>
#include <cmath>
#include <thread>
#include <vector>

#include "comm/gloo_communicator.h"
#include "comm/local_key_value_store.h"
#include "engine/models/expert_parallel.h"

namespace tessera::engine {
namespace {

constexpr int32_t kExperts = 8;
constexpr int32_t kHidden = 64;
constexpr int32_t kInter = 32;
constexpr int32_t kTopK = 2;
constexpr int64_t kTokens = 24;
constexpr int kCalls = 4;

std::vector<ExpertWeights> AllWeights() {
  std::vector<ExpertWeights> all(kExperts);
  for (int32_t e = 0; e < kExperts; ++e) {
    all[e].gate_up.resize(2 * kInter * kHidden);
    all[e].down.resize(kHidden * kInter);
    for (size_t i = 0; i < all[e].gate_up.size(); ++i) {
      all[e].gate_up[i] = 0.1f * std::sin(0.7f * static_cast<float>(i) + static_cast<float>(e));
    }
    for (size_t i = 0; i < all[e].down.size(); ++i) {
      all[e].down[i] = 0.1f * std::cos(0.3f * static_cast<float>(i) - static_cast<float>(e));
    }
  }
  return all;
}

ExpertFactory Factory(const std::vector<ExpertWeights>& all) {
  return [&all](std::span<const int32_t> ids) -> absl::StatusOr<std::unique_ptr<ExpertBlock>> {
    std::vector<ExpertWeights> chosen;
    for (int32_t e : ids) chosen.push_back(all[e]);
    return std::make_unique<MoeExperts>(kHidden, kInter, std::move(chosen));
  };
}

// Call `call` of rank `rank`: its tokens' activations and routing. Every token goes to expert
// 0 (the hot one) and to one other.
struct Step {
  std::vector<float> x;
  std::vector<int32_t> ids;
  std::vector<float> weights;
};
Step MakeStep(int rank, int call) {
  Step s;
  for (int64_t i = 0; i < kTokens * kHidden; ++i) {
    s.x.push_back(std::sin(0.01f * static_cast<float>(i + 1000 * rank + 77 * call)));
  }
  for (int64_t t = 0; t < kTokens; ++t) {
    s.ids.push_back(0);
    s.ids.push_back(static_cast<int32_t>(1 + (t + rank + call) % (kExperts - 1)));
    s.weights.push_back(0.75f);
    s.weights.push_back(0.25f);
  }
  return s;
}

TEST_CASE("Expert rebalancing: hot experts copied, work evened out, outputs unchanged",
          "[engine][moe][ep]") {
  const std::vector<ExpertWeights> all = AllWeights();
  kernels::ThreadPool pool(1);
  // The reference: every expert in one process.
  auto alone = RoutedExperts::Create(Factory(all), kExperts, kHidden, {}, nullptr);
  REQUIRE(alone.ok());
  std::vector<std::vector<std::vector<float>>> want(2);
  for (int rank = 0; rank < 2; ++rank) {
    for (int call = 0; call < kCalls; ++call) {
      const Step s = MakeStep(rank, call);
      std::vector<float> out(s.x.size(), 0.0f);
      REQUIRE((*alone)
                  ->Forward(s.x.data(), kTokens, s.ids.data(), s.weights.data(), kTopK, out.data(),
                            pool)
                  .ok());
      want[rank].push_back(std::move(out));
    }
  }

  comm::LocalKeyValueStore store;
  std::vector<absl::Status> status(2);
  std::vector<std::vector<std::vector<float>>> got(2);
  std::vector<std::vector<int64_t>> rows(2);  // Rows each rank computed, per call.
  std::vector<size_t> hot_copies(2);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      auto comm = comm::GlooCommunicator::Connect(store, "rebalance", rank, 2, {});
      if (!comm.ok()) {
        status[rank] = comm.status();
        return;
      }
      kernels::ThreadPool rank_pool(1);
      // One extra slot per rank; rebalance before every second call, from the tokens seen
      // since the last one.
      auto routed = RoutedExperts::Create(Factory(all), kExperts, kHidden, {comm->get()}, nullptr,
                                          {.redundant = 1, .interval = 2});
      if (!routed.ok()) {
        status[rank] = routed.status();
        return;
      }
      for (int call = 0; call < kCalls; ++call) {
        const Step s = MakeStep(rank, call);
        std::vector<float> out(s.x.size(), 0.0f);
        const int64_t before = (*routed)->rows_computed();
        status[rank] = (*routed)->Forward(s.x.data(), kTokens, s.ids.data(), s.weights.data(),
                                          kTopK, out.data(), rank_pool);
        if (!status[rank].ok()) return;
        rows[rank].push_back((*routed)->rows_computed() - before);
        got[rank].push_back(std::move(out));
      }
      hot_copies[rank] = (*routed)->placement().copies(0).size();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int rank = 0; rank < 2; ++rank) {
    INFO("rank " << rank << ": " << status[rank].ToString());
    REQUIRE(status[rank].ok());
    for (int call = 0; call < kCalls; ++call) {
      INFO("call " << call);
      CHECK(got[rank][call] == want[rank][call]);  // To the bit.
    }
    CHECK(hot_copies[rank] == 2);
  }
  // Before the first rebalance rank 0 holds experts 0-3, so it computes every token's expert-0
  // row from both ranks; after it, each rank keeps its own tokens' expert-0 rows.
  const auto spread = [&](int call) {
    return std::abs(static_cast<double>(rows[0][call] - rows[1][call]));
  };
  INFO("rows per rank, call 0: " << rows[0][0] << " / " << rows[1][0] << "; call 3: " << rows[0][3]
                                 << " / " << rows[1][3]);
  CHECK(rows[0][0] + rows[1][0] == 2 * kTokens * kTopK);
  CHECK(spread(3) < spread(0) / 2);
}

}  // namespace
}  // namespace tessera::engine
