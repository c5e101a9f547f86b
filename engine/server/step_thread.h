// The one thread that owns a worker's StepLoop (and through it the model and KV cache). RPC
// handler threads never touch the loop: they post closures that run on the step thread
// between steps, and receive their request's events through callbacks the loop invokes.
//
// A worker that is one rank of an expert-parallel group steps in lockstep with the other
// ranks: before each step the ranks sum three flags over the group (has work, is draining, is
// stopping). If any rank has work, all step (the idle ones with empty batches, as the
// model's collectives need every rank); a rank that drains makes the whole group drain; the
// group stops when every rank is stopping. If the group breaks (a rank died, a collective
// timed out), every request here ends with UNAVAILABLE and group_failure() says why.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_STEP_THREAD_H_
#define TESSERA_ENGINE_SERVER_STEP_THREAD_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "comm/communicator.h"
#include "engine/runtime/step_loop.h"

namespace tessera::engine::server {

// A snapshot of the loop's load, refreshed after every step.
struct LoopLoad {
  int32_t running_sequences = 0;
  int64_t queued_prefill_tokens = 0;
  int32_t free_kv_blocks = 0;
  int32_t total_kv_blocks = 0;
  int32_t held_handoffs = 0;
  kvcache::BlockManagerStats kv;
  int64_t kv_bytes_moved = 0;
  int64_t preemptions = 0;
  int32_t cached_device_blocks = 0;
  int32_t cached_host_blocks = 0;
  int32_t host_blocks = 0;
  int64_t cached_prompt_tokens = 0;
  int32_t held_hashes = 0;
};

// KV holdings that changed since the last KvBatch taken (net), or a whole snapshot.
struct KvBatch {
  std::vector<uint64_t> stored;
  std::vector<uint64_t> removed;
  bool snapshot = false;
  bool empty() const { return !snapshot && stored.empty() && removed.empty(); }
};

class StepThread {
 public:
  // `on_kv_stored` (optional) runs on the step thread after each step with the block contents
  // that became held since the last one (e.g. to put them in the cache pool), once
  // TakeKvChanges() can return them.
  using KvStoredHook = std::function<void(StepLoop&, const std::vector<uint64_t>& stored)>;
  // `group` (optional, not owned): the expert-parallel group the loop's model belongs to; the
  // loop must have been created with StepLoopOptions::lockstep.
  explicit StepThread(std::unique_ptr<StepLoop> loop, KvStoredHook on_kv_stored = {},
                      comm::Communicator* group = nullptr);
  // Stops after the current step and joins. Requests still in the loop get no more events.
  ~StepThread();
  StepThread(const StepThread&) = delete;
  StepThread& operator=(const StepThread&) = delete;

  // Runs `task` on the step thread before its next step.
  void Post(std::function<void(StepLoop&)> task);

  // Runs `task` on the step thread and returns its result.
  template <typename T>
  T Call(std::function<T(StepLoop&)> task) {
    std::promise<T> promise;
    std::future<T> result = promise.get_future();
    Post([&promise, &task](StepLoop& loop) { promise.set_value(task(loop)); });
    return result.get();
  }

  LoopLoad load() const;

  // Expert-parallel group only. Tells the other ranks this one is draining.
  void SetDraining() { draining_ = true; }
  // Whether any rank of the group is draining.
  bool group_draining() const { return group_draining_.load(); }
  // Not OK once the group broke or stopped under this rank; the step thread has then ended.
  absl::Status group_failure() const;

  // The KV holdings changed since the previous call (net). Thread-safe.
  KvBatch TakeKvChanges();
  // Everything held now; pending changes are dropped (the snapshot includes them).
  KvBatch TakeKvSnapshot();

 private:
  void Run();
  void RefreshLoad();
  // One round of the group's flags; false when the step thread must end.
  bool AgreeWithGroup(bool stopping, bool& step);

  std::unique_ptr<StepLoop> loop_;  // Used only on thread_.
  KvStoredHook on_kv_stored_;
  comm::Communicator* const group_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> group_draining_{false};
  absl::Status group_failure_ ABSL_GUARDED_BY(mu_);
  mutable absl::Mutex mu_;
  std::vector<std::function<void(StepLoop&)>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  LoopLoad load_ ABSL_GUARDED_BY(mu_);
  // Per content hash changed since the last batch: {held before, held now}.
  absl::flat_hash_map<uint64_t, std::pair<bool, bool>> kv_changes_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_STEP_THREAD_H_
