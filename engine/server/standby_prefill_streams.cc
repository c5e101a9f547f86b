#include "engine/server/standby_prefill_streams.h"

#include <vector>

#include "engine/server/async_task.h"

namespace tessera::engine::server {
namespace {

using Clock = std::chrono::steady_clock;
using tessera::internal::v1::PrefillClientMessage;

AsyncTask<bool> CancelAndFinish(std::unique_ptr<PrefillCall> call) {
  call->TryCancel();
  co_await call->Finish();
  co_return true;  // The call is destroyed with this frame, once gRPC is done with it.
}

}  // namespace

StandbyPrefillStreams::StandbyPrefillStreams(ChannelPool& channels, CompletionQueueLoop& queues,
                                             absl::Duration lease, absl::Duration max_idle)
    : channels_(channels), queues_(queues), lease_(lease), max_idle_(max_idle) {}

void StandbyPrefillStreams::Discard(std::unique_ptr<PrefillCall> call) {
  StartDetached<bool>(CancelAndFinish(std::move(call)), [](bool) {});
}

bool StandbyPrefillStreams::Fresh(const Waiting& waiting, Clock::time_point now) const {
  return now - waiting.opened < absl::ToChronoNanoseconds(max_idle_);
}

std::unique_ptr<PrefillCall> StandbyPrefillStreams::Open(
    const std::string& worker_id, const std::string& address, ParentCall* parent,
    PrefillClientMessage first,
    const std::function<std::unique_ptr<grpc::ClientContext>()>& new_context, bool take_waiting,
    bool* standby) {
  std::unique_ptr<PrefillCall> taken;
  bool fresh = false;
  if (take_waiting) {
    absl::MutexLock lock(&mu_);
    auto it = waiting_.end();
    if (grpc::CompletionQueue* queue = queues_.CurrentQueue(); queue != nullptr) {
      it = waiting_.find(Key{worker_id, address, queue});
    } else {  // Off the loop's threads any queue will do.
      for (it = waiting_.begin(); it != waiting_.end(); ++it) {
        if (std::get<0>(it->first) == worker_id && std::get<1>(it->first) == address) break;
      }
    }
    if (it != waiting_.end()) {
      fresh = Fresh(it->second, Clock::now());
      taken = std::move(it->second.call);
      waiting_.erase(it);
    }
  }
  // Too old, or its headers failed: never used.
  if (taken != nullptr && (!fresh || !taken->writable())) Discard(std::move(taken));
  *standby = taken != nullptr;
  if (taken != nullptr) {
    taken->SetParent(parent);
    taken->Write(std::move(first));
    return taken;
  }
  auto stub = tessera::internal::v1::Worker::NewStub(channels_.Get(address));
  return std::make_unique<PrefillCall>(*stub, queues_, new_context(), parent, std::move(first));
}

void StandbyPrefillStreams::Replenish(const std::string& worker_id, const std::string& address) {
  const Clock::time_point now = Clock::now();
  grpc::CompletionQueue* queue = queues_.CurrentQueue();
  if (queue == nullptr) queue = queues_.ForNewCall();
  Key key{worker_id, address, queue};
  std::vector<std::unique_ptr<PrefillCall>> stale;
  bool needed = true;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    if (now - last_sweep_ >= absl::ToChronoNanoseconds(max_idle_)) {
      last_sweep_ = now;
      for (auto it = waiting_.begin(); it != waiting_.end();) {
        if (Fresh(it->second, now)) {
          ++it;
          continue;
        }
        stale.push_back(std::move(it->second.call));
        waiting_.erase(it++);
      }
    }
    needed = !waiting_.contains(key);
  }
  for (auto& call : stale) Discard(std::move(call));
  if (!needed) return;

  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(lease_ + max_idle_));
  auto stub = tessera::internal::v1::Worker::NewStub(channels_.Get(address));
  auto call = std::make_unique<PrefillCall>(*stub, queues_, queue, std::move(context));
  {
    absl::MutexLock lock(&mu_);
    if (!closed_ && !waiting_.contains(key)) {
      waiting_.emplace(std::move(key), Waiting{.call = std::move(call), .opened = now});
      return;
    }
  }
  Discard(std::move(call));  // Closed meanwhile, or another request opened one first.
}

void StandbyPrefillStreams::Forget(const std::string& worker_id) {
  std::vector<std::unique_ptr<PrefillCall>> forgotten;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (std::get<0>(it->first) != worker_id) {
        ++it;
        continue;
      }
      forgotten.push_back(std::move(it->second.call));
      waiting_.erase(it++);
    }
  }
  for (auto& call : forgotten) Discard(std::move(call));
}

void StandbyPrefillStreams::Close() {
  std::vector<std::unique_ptr<PrefillCall>> all;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    for (auto& [key, waiting] : waiting_) all.push_back(std::move(waiting.call));
    waiting_.clear();
  }
  for (auto& call : all) Discard(std::move(call));
}

int StandbyPrefillStreams::waiting() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(waiting_.size());
}

}  // namespace tessera::engine::server
