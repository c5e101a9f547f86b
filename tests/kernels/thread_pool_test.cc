#include "kernels/thread_pool.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace tessera::kernels {
namespace {

TEST_CASE("ThreadPool: ParallelFor runs every index exactly once", "[kernels][threads]") {
  auto threads = GENERATE(1, 2, 4);
  ThreadPool pool(threads);
  for (int64_t n : {0, 1, 7, 64, 1000}) {
    for (int64_t grain : {1, 3, 64, 5000}) {
      std::vector<std::atomic<int>> hits(n);
      std::atomic<int> max_thread{0};
      pool.ParallelFor(n, grain, [&](int64_t begin, int64_t end, int thread) {
        REQUIRE(begin < end);
        REQUIRE(end - begin <= grain);
        for (int64_t i = begin; i < end; ++i) hits[i]++;
        int seen = max_thread.load();
        while (thread > seen && !max_thread.compare_exchange_weak(seen, thread)) {
        }
      });
      for (int64_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 1);
      CHECK(max_thread.load() < threads);
    }
  }
}

TEST_CASE("ThreadPool: many short jobs back to back all complete", "[kernels][threads]") {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  for (int job = 0; job < 20000; ++job) {
    pool.ParallelFor(8, 1, [&](int64_t begin, int64_t end) { total += end - begin; });
  }
  CHECK(total.load() == 20000 * 8);
}

TEST_CASE("ThreadPool: jobs from two calling threads run one at a time, each whole",
          "[kernels][threads]") {
  // Two micro-batches share one pool. A job must see only its own body: each body checks that
  // no other job's body is running beside it, and every index of both jobs runs exactly once.
  const int threads = GENERATE(1, 2);
  ThreadPool pool(threads);
  std::atomic<int> active[2] = {0, 0};  // Bodies of each job running now.
  std::atomic<int> overlaps{0};
  std::vector<std::atomic<int64_t>> totals(2);
  auto caller = [&](int job) {
    for (int round = 0; round < 3000; ++round) {
      pool.ParallelFor(16, 1, [&](int64_t begin, int64_t end, int thread) {
        ++active[job];
        if (active[1 - job].load() != 0) ++overlaps;
        totals[job] += end - begin;
        if (thread == 0 && begin == 0) std::this_thread::yield();
        --active[job];
      });
    }
  };
  std::thread other(caller, 1);
  caller(0);
  other.join();
  CHECK(overlaps.load() == 0);
  CHECK(totals[0].load() == 3000 * 16);
  CHECK(totals[1].load() == 3000 * 16);
}

TEST_CASE("ThreadPool: jobs after idle gaps wake the sleeping workers", "[kernels][threads]") {
  // Gaps longer than the spin phase make workers sleep, so wake-ups are exercised; a lost
  // wake-up shows as a hang (CTest's timeout fails it).
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  for (int job = 0; job < 300; ++job) {
    std::this_thread::sleep_for(std::chrono::microseconds(job % 3 == 0 ? 50 : 400));
    pool.ParallelFor(64, 1, [&](int64_t begin, int64_t end) {
      if (begin % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(300));
      total += end - begin;
    });
  }
  CHECK(total.load() == 300 * 64);
}

TEST_CASE("ThreadPool: a worker late from one job never claims a chunk of the next",
          "[kernels][threads]") {
  // More threads than cores, and jobs that alternate between few and many chunks: a worker
  // descheduled while it finishes one job must not take part in the next with the old job's
  // cursor. Such a stale claim runs a chunk twice (caught by the counts) or over-counts the
  // finished chunks, which leaves the owner waiting forever (caught by the watchdog).
  ThreadPool pool(8);
  constexpr int kJobs = 600000;
  std::atomic<int> jobs_done{0};
  std::atomic<bool> finished{false};
  std::thread watchdog([&] {
    int last = -1;
    while (!finished.load()) {
      for (int i = 0; i < 100 && !finished.load(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      int now = jobs_done.load();
      if (!finished.load() && now == last) {
        std::fprintf(stderr, "ThreadPool stalled in job %d\n", now);
        std::abort();
      }
      last = now;
    }
  });
  std::vector<std::atomic<int>> hits(32);
  int64_t wrong = 0;
  for (int job = 0; job < kJobs; ++job) {
    const int64_t n = job % 2 == 0 ? 2 : 32;
    for (int64_t i = 0; i < n; ++i) hits[i].store(0, std::memory_order_relaxed);
    pool.ParallelFor(n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
    });
    for (int64_t i = 0; i < n; ++i) wrong += hits[i].load() != 1;
    jobs_done.store(job + 1);
  }
  finished.store(true);
  watchdog.join();
  CHECK(wrong == 0);
}

}  // namespace
}  // namespace tessera::kernels
