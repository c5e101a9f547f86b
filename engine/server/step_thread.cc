#include "engine/server/step_thread.h"

#include <iostream>

#include "absl/strings/str_cat.h"

namespace tessera::engine::server {

namespace {

// How long an idle rank of an expert-parallel group waits for work before checking in with the
// group again: the delay a request arriving at an idle group may see, against the cost of a
// collective per check.
constexpr absl::Duration kGroupIdlePoll = absl::Milliseconds(20);

}  // namespace

StepThread::StepThread(std::unique_ptr<StepLoop> loop, KvStoredHook on_kv_stored,
                       comm::Communicator* group)
    : loop_(std::move(loop)), on_kv_stored_(std::move(on_kv_stored)), group_(group) {
  RefreshLoad();
  thread_ = std::thread([this] { Run(); });
}

StepThread::~StepThread() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void StepThread::Post(std::function<void(StepLoop&)> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

KvBatch StepThread::TakeKvChanges() {
  KvBatch batch;
  absl::MutexLock lock(&mu_);
  for (const auto& [hash, states] : kv_changes_) {
    if (states.second && !states.first) batch.stored.push_back(hash);
    if (!states.second && states.first) batch.removed.push_back(hash);
  }
  kv_changes_.clear();
  return batch;
}

KvBatch StepThread::TakeKvSnapshot() {
  return Call<KvBatch>([this](StepLoop& loop) {
    KvBatch batch;
    batch.snapshot = true;
    loop.TakeKvChanges();  // Included in the snapshot.
    batch.stored = loop.block_manager().HeldHashes();
    absl::MutexLock lock(&mu_);
    kv_changes_.clear();
    return batch;
  });
}

LoopLoad StepThread::load() const {
  absl::MutexLock lock(&mu_);
  return load_;
}

void StepThread::RefreshLoad() {
  LoopLoad load;
  load.running_sequences = loop_->running();
  load.queued_prefill_tokens = loop_->pending_prefill_tokens();
  load.free_kv_blocks = loop_->block_manager().unreferenced();
  load.total_kv_blocks = loop_->block_manager().device_blocks();
  load.held_handoffs = loop_->held();
  const kvcache::BlockManager& blocks = loop_->block_manager();
  load.kv = blocks.stats();
  load.kv_bytes_moved = loop_->kv_bytes_moved();
  load.preemptions = loop_->preemptions();
  load.cached_device_blocks = blocks.cached_device();
  load.cached_host_blocks = blocks.cached_host();
  load.host_blocks = blocks.host_blocks();
  load.cached_prompt_tokens = loop_->cached_prompt_tokens();
  load.held_hashes = blocks.held_hashes();
  kvcache::BlockManager::Changes changes = loop_->TakeKvChanges();
  {
    absl::MutexLock lock(&mu_);
    load_ = load;
    for (uint64_t hash : changes.stored) {
      auto [it, inserted] = kv_changes_.try_emplace(hash, false, true);
      it->second.second = true;
    }
    for (uint64_t hash : changes.removed) {
      auto [it, inserted] = kv_changes_.try_emplace(hash, true, false);
      it->second.second = false;
    }
  }
  // After the changes are takeable, so a hook that wakes their publisher finds them.
  if (on_kv_stored_ && !changes.stored.empty()) on_kv_stored_(*loop_, changes.stored);
}

absl::Status StepThread::group_failure() const {
  absl::MutexLock lock(&mu_);
  return group_failure_;
}

bool StepThread::AgreeWithGroup(bool stopping, bool& step) {
  int64_t flags[3] = {loop_->HasWork() ? 1 : 0, draining_.load() ? 1 : 0, stopping ? 1 : 0};
  absl::Status status = group_->AllReduceSum(flags);
  if (status.ok() && flags[2] < group_->size()) {
    if (flags[1] > 0) group_draining_ = true;
    step = flags[0] > 0;
    return true;
  }
  if (status.ok() && stopping) return false;  // Every rank is stopping: the group ends here.
  if (status.ok()) {
    // Every other rank stopped while this one was still serving.
    status = absl::UnavailableError("the expert-parallel group stopped");
  }
  status = absl::UnavailableError(absl::StrCat("expert-parallel rank ", group_->rank(), " of ",
                                               group_->size(), ": ", status.message()));
  std::cerr << "tessera worker: " << status.message() << "\n";
  loop_->CancelAll(status);
  absl::MutexLock lock(&mu_);
  group_failure_ = status;
  return false;
}

void StepThread::Run() {
  std::vector<std::function<void(StepLoop&)>> tasks;
  bool group_failed = false;
  while (true) {
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      // Idle: sleep until a task arrives (or stop); in a group, check in with the other ranks
      // now and then, as they may have work. Busy: just take what is there.
      auto ready = [this] { return stop_ || !tasks_.empty(); };
      if (!loop_->HasWork() || group_failed) {
        if (group_ == nullptr || group_failed) {
          mu_.Await(absl::Condition(&ready));
        } else {
          mu_.AwaitWithTimeout(absl::Condition(&ready), kGroupIdlePoll);
        }
      }
      if (stop_ && group_ == nullptr) return;
      stopping = stop_;
      tasks.swap(tasks_);
    }
    for (auto& task : tasks) task(*loop_);
    tasks.clear();
    bool step = loop_->HasWork();
    if (group_ != nullptr && group_failed) {
      // No more steps: requests that still arrive end at once, and tasks keep running so
      // that callers waiting on them return.
      loop_->CancelAll(group_failure());
      RefreshLoad();
      if (stopping) return;
      continue;
    }
    if (group_ != nullptr && !AgreeWithGroup(stopping, step)) {
      RefreshLoad();
      if (stopping) return;
      group_failed = true;
      continue;
    }
    if (step) {
      absl::Status status = loop_->Step();
      if (!status.ok()) {
        // A failed step is a bug or a resource failure for everyone in it: end them all with
        // the error rather than retry forever.
        std::cerr << "tessera worker: step failed: " << status << "\n";
        loop_->CancelAll(status);
      }
    }
    RefreshLoad();
  }
}

}  // namespace tessera::engine::server
