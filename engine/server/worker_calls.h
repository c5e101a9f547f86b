// The router's calls to a worker (Decode and Prefill), on gRPC's callback API and awaitable
// from AsyncTask coroutines: `co_await call.Read(&message)`, `co_await call.Finish()`.
// Writes are queued and never wait. Every call must be finished (read to its end, or
// cancelled, then Finish awaited) before it is destroyed: Finish returns only once gRPC is done
// with the call.
// Thread-safety: one coroutine drives a call; gRPC's threads complete its operations.
#ifndef TESSERA_ENGINE_SERVER_WORKER_CALLS_H_
#define TESSERA_ENGINE_SERVER_WORKER_CALLS_H_

#include <grpcpp/grpcpp.h>

#include <coroutine>
#include <deque>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "tessera/internal/v1/worker.grpc.pb.h"

namespace tessera::engine::server {

// One operation at a time of one kind (a read): the callback that completes it resumes the
// coroutine that waits on it.
class PendingOperation {
 public:
  template <typename Start>
  struct Awaiter {
    PendingOperation& operation;
    Start start;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> waiter) {
      operation.waiter_ = waiter;
      start();  // May complete, and resume the waiter, on another thread before this returns.
    }
    bool await_resume() const noexcept { return operation.ok_; }
  };
  template <typename Start>
  Awaiter<Start> Begin(Start start) {
    return Awaiter<Start>{*this, std::move(start)};
  }
  void Complete(bool ok) {
    ok_ = ok;
    std::exchange(waiter_, {}).resume();
  }

 private:
  std::coroutine_handle<> waiter_;
  bool ok_ = false;
};

// The call's final status, delivered once by OnDone. A call holds itself open (gRPC's
// AddHold) until its Finish is awaited, since its reads and writes start outside gRPC's
// reactions: so OnDone cannot come before, and no operation can start after.
class FinalStatus {
 public:
  void Set(const grpc::Status& status);

  template <typename Release>
  struct Awaiter {
    FinalStatus& final;
    Release release;  // Drops the call's hold: OnDone may follow at once, on another thread.
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> waiter) {
      if (!final.Register(waiter)) return false;
      release();
      return true;
    }
    grpc::Status await_resume() const { return final.status_; }
  };
  template <typename Release>
  Awaiter<Release> Wait(Release release) {
    return Awaiter<Release>{*this, std::move(release)};
  }

 private:
  // False if the status is already here (then the waiter is not suspended).
  bool Register(std::coroutine_handle<> waiter);

  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::coroutine_handle<> waiter_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_;  // Written before done_ is set; read only after.
};

// Worker.Decode: one request, a stream of events.
class DecodeCall final : public grpc::ClientReadReactor<tessera::internal::v1::DecodeEvent> {
 public:
  // Starts the call.
  DecodeCall(tessera::internal::v1::Worker::Stub& stub,
             std::unique_ptr<grpc::ClientContext> context,
             tessera::internal::v1::DecodeRequest request);

  // co_await: true with the next event in `*event`, false at the end of the stream.
  auto Read(tessera::internal::v1::DecodeEvent* event) {
    return read_.Begin([this, event] { StartRead(event); });
  }
  // co_await: the call's status, once gRPC is done with the call. No operation may start
  // after this.
  auto Finish() {
    return final_.Wait([this] { RemoveHold(); });
  }
  void TryCancel() { context_->TryCancel(); }

  void OnReadDone(bool ok) override { read_.Complete(ok); }
  void OnDone(const grpc::Status& status) override { final_.Set(status); }

 private:
  std::unique_ptr<grpc::ClientContext> context_;
  tessera::internal::v1::DecodeRequest request_;
  PendingOperation read_;
  FinalStatus final_;
};

// Worker.Prefill: the request goes out first, the first token comes back, then a release (or
// the stream's end) lets the worker free the KV.
class PrefillCall final
    : public grpc::ClientBidiReactor<tessera::internal::v1::PrefillClientMessage,
                                     tessera::internal::v1::PrefillServerMessage> {
 public:
  // Starts the call; `first` goes out with the call's headers in one write.
  PrefillCall(tessera::internal::v1::Worker::Stub& stub,
              std::unique_ptr<grpc::ClientContext> context,
              tessera::internal::v1::PrefillClientMessage first);

  // Queues a message; `last` half-closes the stream with it.
  void Write(tessera::internal::v1::PrefillClientMessage message, bool last = false);
  // Half-closes the stream (after the queued writes).
  void WritesDone();

  auto Read(tessera::internal::v1::PrefillServerMessage* message) {
    return read_.Begin([this, message] { StartRead(message); });
  }
  auto Finish() {
    return final_.Wait([this] { RemoveHold(); });
  }
  void TryCancel() { context_->TryCancel(); }

  void OnReadDone(bool ok) override { read_.Complete(ok); }
  void OnWriteDone(bool ok) override;
  void OnWritesDoneDone(bool ok) override;
  void OnDone(const grpc::Status& status) override { final_.Set(status); }

 private:
  struct Outgoing {
    std::optional<tessera::internal::v1::PrefillClientMessage> message;  // None: WritesDone.
    bool last = false;
  };
  // Starts the front of the queue. Requires that no write is in flight.
  void StartFront() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteFinished(bool ok);

  std::unique_ptr<grpc::ClientContext> context_;
  PendingOperation read_;
  FinalStatus final_;
  absl::Mutex mu_;
  std::deque<Outgoing> outgoing_ ABSL_GUARDED_BY(mu_);  // The front is in flight.
  bool closed_ ABSL_GUARDED_BY(mu_) = false;            // Half-closed, or writes failed.
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_WORKER_CALLS_H_
