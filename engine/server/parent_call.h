// A client's request as the worker calls it makes see it: the client's deadline, and its
// cancellation. gRPC's own propagation (ClientContext::FromServerContext) cannot be used on
// the asynchronous API, where the server context says whether its call was cancelled only
// after the call's done notification, in no fixed order with the worker calls' failures. A
// dispatcher that saw a worker call fail with CANCELLED before it knew why would count it
// against the worker and retry elsewhere. Here the cancelled flag is set before any worker call
// is cancelled, so every failure it causes sees it.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_PARENT_CALL_H_
#define TESSERA_ENGINE_SERVER_PARENT_CALL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"

namespace tessera::engine::server {

class ParentCall {
 public:
  explicit ParentCall(std::chrono::system_clock::time_point deadline) : deadline_(deadline) {}

  std::chrono::system_clock::time_point deadline() const { return deadline_; }
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // Marks the request cancelled, then cancels every tracked worker call (and any tracked
  // later).
  void Cancel() {
    absl::MutexLock lock(&mu_);
    cancelled_.store(true, std::memory_order_release);
    for (grpc::ClientContext* context : calls_) context->TryCancel();
  }
  // While tracked, the call is cancelled with the request. Untrack before the context dies.
  void Track(grpc::ClientContext* context) {
    absl::MutexLock lock(&mu_);
    calls_.insert(context);
    if (cancelled()) context->TryCancel();
  }
  void Untrack(grpc::ClientContext* context) {
    absl::MutexLock lock(&mu_);
    calls_.erase(context);
  }

 private:
  const std::chrono::system_clock::time_point deadline_;
  std::atomic<bool> cancelled_{false};
  absl::Mutex mu_;
  absl::flat_hash_set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_PARENT_CALL_H_
