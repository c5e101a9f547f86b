// Server calls whose handler is waiting for the peer's first message. The router opens Prefill
// streams ahead of requests (StandbyPrefillStreams), so such a call may wait a long time, on a
// handler thread of the worker's synchronous server. A worker that is leaving cancels them at
// once, or its server's shutdown would wait out its grace period for them, and refuses new
// ones.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_IDLE_SERVER_CALLS_H_
#define TESSERA_ENGINE_SERVER_IDLE_SERVER_CALLS_H_

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"

namespace tessera::engine::server {

class IdleServerCalls {
 public:
  // Before the handler waits for the first message. False once closed: end the call.
  bool Enter(grpc::ServerContext* call) {
    absl::MutexLock lock(&mu_);
    if (closed_) return false;
    calls_.insert(call);
    return true;
  }
  // Once the first message arrived, or the wait failed.
  void Leave(grpc::ServerContext* call) {
    absl::MutexLock lock(&mu_);
    calls_.erase(call);
  }
  // Cancels every waiting call (its wait fails; the handler returns CANCELLED) and refuses
  // new ones.
  void CancelAll() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    for (grpc::ServerContext* call : calls_) call->TryCancel();
  }
  int waiting() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(calls_.size());
  }

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_set<grpc::ServerContext*> calls_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_IDLE_SERVER_CALLS_H_
