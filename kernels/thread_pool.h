// A fixed pool of compute threads for the kernels. The calling thread takes part in every
// job, so a pool of N threads starts N - 1 workers.
//
// Work is handed out in chunks that threads claim from a shared cursor, so a job never waits
// for a worker that has not started: on a busy host (several worker processes on two cores)
// the caller simply does the chunks itself. Between jobs workers spin briefly, because a
// decode step runs hundreds of short parallel kernels and waking a sleeping thread costs more
// than most of them take; after ~200 microseconds idle they sleep, so an idle worker process
// does not burn a core.
// Compute threads flush denormal floats to zero (FTZ/DAZ): the workers from the start, and the
// thread that constructs the pool from then on.
// Thread-safety: ParallelFor() may be called from several threads (e.g. the two micro-batches
// of an expert-parallel step, whose communication overlaps each other's compute); their jobs
// run one at a time, each on the whole pool. Bodies must not call back into the same pool.
#ifndef TESSERA_KERNELS_THREAD_POOL_H_
#define TESSERA_KERNELS_THREAD_POOL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tessera::kernels {

class ThreadPool {
 public:
  // `num_threads` >= 1 counts the calling thread.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Runs body(begin, end, thread_index) over [0, n) in chunks of `grain` elements (the last
  // may be shorter), returning when all are done. thread_index < num_threads() identifies the
  // thread running the chunk, for per-thread scratch; 0 is the caller.
  void ParallelFor(int64_t n, int64_t grain,
                   const std::function<void(int64_t begin, int64_t end, int thread_index)>& body);
  void ParallelFor(int64_t n, int64_t grain,
                   const std::function<void(int64_t begin, int64_t end)>& body);

 private:
  void RunJob(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& body);
  void WorkerLoop(int thread_index);
  void WaitForChange(const std::atomic<uint32_t>& word, uint32_t old);
  void Wake(const std::atomic<uint32_t>& word);
  // Claims and runs chunks of job `generation` until none are left.
  void RunChunks(uint32_t generation, int thread_index);

  const int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex job_mutex_;  // Held by the caller whose job runs.
  // The current job; written by the owner before it publishes a new generation.
  const std::function<void(int64_t, int64_t, int)>* body_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
  // The words every chunk writes (cursor_, chunks_done_) each have a cache line of their own:
  // sharing one with the words that waiting threads spin on made every claim and completion
  // bounce the line between cores.
  // High 32 bits: job generation; low 32 bits: its number of chunks. One word, so a worker
  // still finishing an older job can tell that a chunk count it reads is not that job's.
  alignas(64) std::atomic<uint64_t> job_{0};
  std::atomic<uint32_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};  // Threads asleep (or about to sleep) in WaitForChange.
  // High 32 bits: job generation; low 32 bits: next chunk to claim.
  alignas(64) std::atomic<uint64_t> cursor_{0};
  alignas(64) std::atomic<uint32_t> chunks_done_{0};
  char pad_[60];  // Keeps the next object off chunks_done_'s line.
};

// Makes the calling thread flush denormal floats to zero, as the pool's threads do: for a
// thread that computes beside them (a second micro-batch's), so results do not depend on
// which thread computed them.
void FlushDenormalsOnThisThread();

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_THREAD_POOL_H_
