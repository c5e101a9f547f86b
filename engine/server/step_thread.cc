#include "engine/server/step_thread.h"

#include <iostream>

namespace tessera::engine::server {

StepThread::StepThread(std::unique_ptr<StepLoop> loop, KvStoredHook on_kv_stored)
    : loop_(std::move(loop)), on_kv_stored_(std::move(on_kv_stored)) {
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
  if (on_kv_stored_ && !changes.stored.empty()) on_kv_stored_(*loop_, changes.stored);
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

void StepThread::Run() {
  std::vector<std::function<void(StepLoop&)>> tasks;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      // Idle: sleep until a task arrives (or stop). Busy: just take what is there.
      auto ready = [this] { return stop_ || !tasks_.empty(); };
      if (!loop_->HasWork()) mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      tasks.swap(tasks_);
    }
    for (auto& task : tasks) task(*loop_);
    tasks.clear();
    if (loop_->HasWork()) {
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
