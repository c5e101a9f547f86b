#include "kernels/thread_pool.h"

#include <immintrin.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <limits>

#include "common/check.h"

namespace tessera::kernels {
namespace {

constexpr auto kSpinBeforeSleep = std::chrono::microseconds(200);

// Sleeping uses the futex system call directly: libstdc++ 12's std::atomic::wait can miss a
// notification and sleep forever.
void FutexWait(const std::atomic<uint32_t>& word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<const uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected,
          nullptr, nullptr, 0);
}

void FutexWakeAll(const std::atomic<uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<const uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX,
          nullptr, nullptr, 0);
}

// Denormal floats cost a microcode assist per operation (100+ cycles) and carry no
// information at the scale of activations and attention weights, so compute threads flush
// them to zero (FTZ) and read them as zero (DAZ).
void FlushDenormals() { _mm_setcsr(_mm_getcsr() | 0x8040); }

}  // namespace

void FlushDenormalsOnThisThread() { FlushDenormals(); }

// Spins until `word` differs from `old`, then sleeps on it. Pairs with Wake(): the sleeper
// count and the word are both seq_cst, so a waker either sees the sleeper or the sleeper sees
// the new value before it sleeps.
void ThreadPool::WaitForChange(const std::atomic<uint32_t>& word, uint32_t old) {
  auto start = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    if (word.load(std::memory_order_acquire) != old) return;
    _mm_pause();
    if ((i & 255) == 255 && std::chrono::steady_clock::now() - start > kSpinBeforeSleep) break;
  }
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  while (word.load(std::memory_order_seq_cst) == old) FutexWait(word, old);
  sleepers_.fetch_sub(1, std::memory_order_seq_cst);
}

void ThreadPool::Wake(const std::atomic<uint32_t>& word) {
  if (sleepers_.load(std::memory_order_seq_cst) > 0) FutexWakeAll(word);
}

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads) {
  TESSERA_CHECK(num_threads >= 1);
  FlushDenormals();  // The calling thread runs chunks too.
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  Wake(generation_);
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& body) {
  ParallelFor(n, grain, [&body](int64_t begin, int64_t end, int) { body(begin, end); });
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t, int)>& body) {
  if (n <= 0) return;
  // Also for inline jobs: their bodies may use thread 0's scratch.
  std::lock_guard<std::mutex> lock(job_mutex_);
  RunJob(n, grain, body);
}

void ThreadPool::RunJob(int64_t n, int64_t grain,
                        const std::function<void(int64_t, int64_t, int)>& body) {
  grain = std::max<int64_t>(grain, 1);
  int64_t chunks = (n + grain - 1) / grain;
  if (num_threads_ == 1 || chunks == 1) {
    for (int64_t begin = 0; begin < n; begin += grain) body(begin, std::min(n, begin + grain), 0);
    return;
  }
  TESSERA_CHECK(chunks <= std::numeric_limits<uint32_t>::max());
  body_ = &body;
  n_ = n;
  grain_ = grain;
  chunks_done_.store(0, std::memory_order_relaxed);
  uint32_t generation = generation_.load(std::memory_order_relaxed) + 1;
  job_.store((uint64_t{generation} << 32) | static_cast<uint32_t>(chunks),
             std::memory_order_release);
  cursor_.store(uint64_t{generation} << 32, std::memory_order_release);
  generation_.store(generation, std::memory_order_seq_cst);
  Wake(generation_);
  RunChunks(generation, 0);
  // Chunks claimed by workers may still be running.
  for (uint32_t done = chunks_done_.load(std::memory_order_acquire);
       done != static_cast<uint32_t>(chunks); done = chunks_done_.load(std::memory_order_acquire)) {
    WaitForChange(chunks_done_, done);
  }
}

void ThreadPool::RunChunks(uint32_t generation, int thread_index) {
  while (true) {
    uint64_t cursor = cursor_.load(std::memory_order_acquire);
    if (static_cast<uint32_t>(cursor >> 32) != generation) return;
    uint32_t chunk = static_cast<uint32_t>(cursor);
    // A worker descheduled here may resume after this job ended and the next one began. The
    // next job's chunk count, compared with this job's cursor, could let it claim a chunk
    // that does not exist, run the new body twice and over-count chunks_done_ (leaving the
    // owner waiting forever). So the count is read together with its generation.
    const uint64_t job = job_.load(std::memory_order_acquire);
    if (static_cast<uint32_t>(job >> 32) != generation) return;
    const uint32_t chunks = static_cast<uint32_t>(job);
    if (chunk >= chunks) return;
    // Chunk `chunk` is unclaimed, so this job cannot have ended: if the exchange succeeds, the
    // claim is of this job.
    if (!cursor_.compare_exchange_weak(cursor, cursor + 1, std::memory_order_acq_rel)) continue;
    // The job cannot finish before this chunk is counted done, so body_ is still valid.
    int64_t begin = int64_t{chunk} * grain_;
    (*body_)(begin, std::min(n_, begin + grain_), thread_index);
    if (chunks_done_.fetch_add(1, std::memory_order_seq_cst) + 1 == chunks) {
      Wake(chunks_done_);
    }
  }
}

void ThreadPool::WorkerLoop(int thread_index) {
  FlushDenormals();
  uint32_t seen = 0;
  while (true) {
    WaitForChange(generation_, seen);
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_acquire)) return;
    RunChunks(seen, thread_index);
  }
}

}  // namespace tessera::kernels
