#include "bench/moe_dispatch_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "comm/gloo_communicator.h"
#include "comm/local_key_value_store.h"

namespace tessera::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Figures {
  double dispatch_us = 0, combine_us = 0;
  double bytes_dispatch = 0, bytes_combine = 0;  // Rank 0's sent + received.
  double memcpy_us = 0;                          // Same bytes as dispatch + combine.
};

// One rank's part of one configuration; rank 0 fills `figures`.
absl::Status RunRank(comm::Communicator& group, int tokens, int hidden, int experts, int top_k,
                     int repetitions, Figures* figures) {
  const int ranks = group.size();
  const int per_rank = experts / ranks;
  std::mt19937 rng(1234 + group.rank());
  std::vector<int32_t> ids(static_cast<size_t>(tokens) * top_k);
  for (int t = 0; t < tokens; ++t) {
    std::vector<int32_t> all(static_cast<size_t>(experts));
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    std::copy_n(all.begin(), top_k, ids.begin() + t * top_k);
  }
  std::vector<int64_t> rows_to(ranks, 0), rows_from(ranks, 0);
  for (int32_t id : ids) ++rows_to[id / per_rank];
  const size_t row_bytes = sizeof(int32_t) + sizeof(float) * hidden;
  std::vector<std::byte> send(ids.size() * row_bytes, std::byte{1});
  std::vector<double> dispatch, combine;
  const std::vector<int64_t> eight(ranks, sizeof(int64_t));
  std::vector<std::byte> received, results, returned;
  int64_t in_rows = 0;
  for (int rep = 0; rep <= repetitions; ++rep) {  // The first is a warm-up.
    if (absl::Status s = group.Barrier(); !s.ok()) return s;
    const auto start = Clock::now();
    absl::Status s = group.AllToAllV(
        {reinterpret_cast<const std::byte*>(rows_to.data()), ranks * sizeof(int64_t)}, eight,
        {reinterpret_cast<std::byte*>(rows_from.data()), ranks * sizeof(int64_t)}, eight);
    if (!s.ok()) return s;
    in_rows = 0;
    for (int64_t n : rows_from) in_rows += n;
    received.resize(static_cast<size_t>(in_rows) * row_bytes);
    std::vector<int64_t> send_bytes(ranks), recv_bytes(ranks);
    for (int r = 0; r < ranks; ++r) {
      send_bytes[r] = rows_to[r] * static_cast<int64_t>(row_bytes);
      recv_bytes[r] = rows_from[r] * static_cast<int64_t>(row_bytes);
    }
    if (s = group.AllToAllV(send, send_bytes, received, recv_bytes); !s.ok()) return s;
    const auto dispatched = Clock::now();
    results.assign(static_cast<size_t>(in_rows) * hidden * sizeof(float), std::byte{2});
    returned.resize(ids.size() * hidden * sizeof(float));
    for (int r = 0; r < ranks; ++r) {
      send_bytes[r] = rows_from[r] * hidden * static_cast<int64_t>(sizeof(float));
      recv_bytes[r] = rows_to[r] * hidden * static_cast<int64_t>(sizeof(float));
    }
    if (s = group.AllToAllV(results, send_bytes, returned, recv_bytes); !s.ok()) return s;
    const auto combined = Clock::now();
    if (rep > 0) {
      dispatch.push_back(std::chrono::duration<double, std::micro>(dispatched - start).count());
      combine.push_back(std::chrono::duration<double, std::micro>(combined - dispatched).count());
    }
  }
  if (figures == nullptr) return absl::OkStatus();
  figures->dispatch_us = Median(dispatch);
  figures->combine_us = Median(combine);
  figures->bytes_dispatch = static_cast<double>(send.size() + received.size());
  figures->bytes_combine = static_cast<double>(results.size() + returned.size());
  // The reference: moving the same bytes with memcpy in one thread.
  const size_t total = send.size() + received.size() + results.size() + returned.size();
  std::vector<char> a(total, 1), b(total);
  std::vector<double> copies;
  for (int rep = 0; rep < repetitions; ++rep) {
    const auto start = Clock::now();
    std::memcpy(b.data(), a.data(), total);
    copies.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    a[static_cast<size_t>(rep) % total] = b[total - 1];
  }
  figures->memcpy_us = Median(copies);
  return absl::OkStatus();
}

}  // namespace

absl::Status RunMoeDispatchBench(const MoeDispatchBenchOptions& options) {
  nlohmann::json rows = nlohmann::json::array();
  if (!options.json) {
    std::printf("%5s %7s %7s | %12s %12s | %10s %10s | %10s\n", "ranks", "tokens", "hidden",
                "dispatch us", "combine us", "disp GB/s", "comb GB/s", "memcpy us");
  }
  int group_id = 0;
  for (int ranks : options.ranks) {
    if (ranks < 1 || options.experts % ranks != 0 || options.top_k > options.experts) {
      return absl::InvalidArgumentError(
          absl::StrCat("--ranks ", ranks, " must divide --experts ", options.experts));
    }
    for (int tokens : options.tokens) {
      for (int hidden : options.hidden) {
        comm::LocalKeyValueStore store;
        const std::string group = absl::StrCat("bench-", group_id++);
        std::vector<absl::Status> results(ranks);
        Figures figures;
        std::vector<std::thread> threads;
        for (int rank = 0; rank < ranks; ++rank) {
          threads.emplace_back([&, rank] {
            absl::StatusOr<std::unique_ptr<comm::GlooCommunicator>> c =
                comm::GlooCommunicator::Connect(store, group, rank, ranks, {});
            if (!c.ok()) {
              results[rank] = c.status();
              return;
            }
            results[rank] = RunRank(**c, tokens, hidden, options.experts, options.top_k,
                                    options.repetitions, rank == 0 ? &figures : nullptr);
          });
        }
        for (std::thread& t : threads) t.join();
        for (const absl::Status& s : results) {
          if (!s.ok()) return s;
        }
        const double dispatch_gbs = figures.bytes_dispatch / figures.dispatch_us / 1e3;
        const double combine_gbs = figures.bytes_combine / figures.combine_us / 1e3;
        rows.push_back({{"ranks", ranks},
                        {"tokens_per_rank", tokens},
                        {"hidden", hidden},
                        {"dispatch_us", figures.dispatch_us},
                        {"combine_us", figures.combine_us},
                        {"dispatch_gb_per_s", dispatch_gbs},
                        {"combine_gb_per_s", combine_gbs},
                        {"memcpy_us", figures.memcpy_us}});
        if (!options.json) {
          std::printf("%5d %7d %7d | %12.0f %12.0f | %10.2f %10.2f | %10.1f\n", ranks, tokens,
                      hidden, figures.dispatch_us, figures.combine_us, dispatch_gbs, combine_gbs,
                      figures.memcpy_us);
        }
      }
    }
  }
  if (options.json) std::printf("%s\n", rows.dump(1).c_str());
  return absl::OkStatus();
}

}  // namespace tessera::bench
