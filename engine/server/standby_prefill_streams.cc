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

template <typename Drop>
void StandbyPrefillStreams::DiscardWhere(Drop drop) {
  std::vector<std::unique_ptr<PrefillCall>> dropped;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (!drop(it->first, it->second)) {
        ++it;
        continue;
      }
      dropped.push_back(std::move(it->second.call));
      waiting_.erase(it++);
    }
  }
  for (auto& call : dropped) Discard(std::move(call));
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
  bool sweep = false;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    sweep = now - last_sweep_ >= absl::ToChronoNanoseconds(max_idle_);
    if (sweep) last_sweep_ = now;
  }
  if (sweep) DiscardWhere([&](const Key&, const Waiting& waiting) { return !Fresh(waiting, now); });
  {
    absl::MutexLock lock(&mu_);
    if (waiting_.contains(key)) return;
  }

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
  DiscardWhere([&](const Key& key, const Waiting&) { return std::get<0>(key) == worker_id; });
}

void StandbyPrefillStreams::Close() {
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  DiscardWhere([](const Key&, const Waiting&) { return true; });
}

int StandbyPrefillStreams::waiting() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(waiting_.size());
}

}  // namespace tessera::engine::server
