// The router's calls to a worker (Decode and Prefill), on gRPC's asynchronous API and
// awaitable from AsyncTask coroutines: `co_await call.Read(&message)`, `co_await
// call.Finish()`. Their completions arrive on a CompletionQueueLoop queue, whose thread
// resumes the coroutine. Writes are queued and never wait. Every call must be finished (read
// to its end, or cancelled, then Finish awaited) before it is destroyed: Finish returns only
// once every operation the call started has completed, so gRPC is done with it.
// Thread-safety: one coroutine drives a call; the queue's thread completes its operations.
#ifndef TESSERA_ENGINE_SERVER_WORKER_CALLS_H_
#define TESSERA_ENGINE_SERVER_WORKER_CALLS_H_

#include <grpcpp/grpcpp.h>

#include <coroutine>
#include <deque>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/server/completion_queue_loop.h"
#include "engine/server/parent_call.h"
#include "tessera/internal/v1/worker.grpc.pb.h"

namespace tessera::engine::server {

// One operation at a time of one kind (a read): the completion resumes the coroutine that
// waits on it.
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

// What both calls share: the context (tracked by the client's request, so its cancellation
// reaches the call), the count of operations in flight, and the final status, delivered once
// the Finish operation and every other operation have completed.
class WorkerCall {
 public:
  void TryCancel() { context_->TryCancel(); }
  // For a call opened before its request arrived: from now on the request's cancellation
  // reaches it. Requires that the call has no parent yet.
  void SetParent(ParentCall* parent);
  // The queue its completions arrive on.
  grpc::CompletionQueue* queue() const { return queue_; }

  // co_await: the call's status, once gRPC is done with the call. No operation may start
  // after this.
  struct FinishAwaiter {
    WorkerCall& call;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> waiter);
    grpc::Status await_resume() const { return call.status_; }
  };
  FinishAwaiter Finish() { return FinishAwaiter{*this}; }

 protected:
  // On `queue` (one of `loop`'s), or the one loop.ForNewCall() gives when null.
  WorkerCall(CompletionQueueLoop& loop, grpc::CompletionQueue* queue,
             std::unique_ptr<grpc::ClientContext> context, ParentCall* parent);
  ~WorkerCall();

  // Brackets every operation but Finish.
  void OperationStarted();
  void OperationCompleted();
  // Starts the gRPC Finish operation with `finished_` as its tag.
  virtual void StartFinish(grpc::Status* status, CompletionTag* tag) = 0;

  // Until gRPC is done with the call (it may outlive the task that opened it), the loop's
  // queues stay up.
  CompletionQueueLoop::LiveCall live_;
  // The calling thread's queue when it is one of the loop's, so completions stay on it.
  grpc::CompletionQueue* const queue_;
  std::unique_ptr<grpc::ClientContext> context_;
  CompletionTag started_ = CompletionTag::To<&WorkerCall::OnStarted>(this);

 private:
  void OnStarted(bool) { OperationCompleted(); }
  void OnFinished(bool);
  // The Finish waiter, to resume once the lock is released, if everything has completed.
  std::coroutine_handle<> TakeWaiterIfDone() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ParentCall* parent_;
  CompletionTag finished_ = CompletionTag::To<&WorkerCall::OnFinished>(this);
  grpc::Status status_;
  absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool finish_completed_ ABSL_GUARDED_BY(mu_) = false;
  std::coroutine_handle<> finish_waiter_ ABSL_GUARDED_BY(mu_);
};

// Worker.Decode: one request, a stream of events.
class DecodeCall final : public WorkerCall {
 public:
  // Starts the call on one of `loop`'s queues. `parent` (may be null) is the client's request.
  DecodeCall(tessera::internal::v1::Worker::Stub& stub, CompletionQueueLoop& loop,
             std::unique_ptr<grpc::ClientContext> context, ParentCall* parent,
             const tessera::internal::v1::DecodeRequest& request);

  // co_await: true with the next event in `*event`, false at the end of the stream.
  auto Read(tessera::internal::v1::DecodeEvent* event) {
    return read_.Begin([this, event] {
      OperationStarted();
      stream_->Read(event, &read_done_);
    });
  }

 private:
  void StartFinish(grpc::Status* status, CompletionTag* tag) override {
    stream_->Finish(status, tag);
  }
  void OnReadDone(bool ok) {
    OperationCompleted();
    read_.Complete(ok);
  }

  std::unique_ptr<grpc::ClientAsyncReader<tessera::internal::v1::DecodeEvent>> stream_;
  PendingOperation read_;
  CompletionTag read_done_ = CompletionTag::To<&DecodeCall::OnReadDone>(this);
};

// Worker.Prefill: the request goes out first, the first token comes back, then a release (or
// the stream's end) lets the worker free the KV.
class PrefillCall final : public WorkerCall {
 public:
  // Starts the call; `first` goes out with the call's headers in one write.
  PrefillCall(tessera::internal::v1::Worker::Stub& stub, CompletionQueueLoop& loop,
              std::unique_ptr<grpc::ClientContext> context, ParentCall* parent,
              tessera::internal::v1::PrefillClientMessage first);
  // Opens the stream ahead of its request, on `queue` (one of `loop`'s): the headers go out
  // now, the request later with Write(), once SetParent() has tied the call to the client's
  // request.
  PrefillCall(tessera::internal::v1::Worker::Stub& stub, CompletionQueueLoop& loop,
              grpc::CompletionQueue* queue, std::unique_ptr<grpc::ClientContext> context);

  // False once the stream cannot carry a message: it failed (for a stream opened ahead, maybe
  // while it waited), or it is half-closed.
  bool writable() {
    absl::MutexLock lock(&mu_);
    return !closed_;
  }

  // Queues a message; `last` half-closes the stream with it.
  void Write(tessera::internal::v1::PrefillClientMessage message, bool last = false);
  // Half-closes the stream (after the queued writes).
  void WritesDone();

  auto Read(tessera::internal::v1::PrefillServerMessage* message) {
    return read_.Begin([this, message] {
      OperationStarted();
      stream_->Read(message, &read_done_);
    });
  }

 private:
  struct Outgoing {
    // kHeaders: those of a stream opened ahead of its request, which gRPC sends with the
    // operation set Write uses, so they queue like a write.
    enum class Kind { kHeaders, kMessage, kLastMessage, kWritesDone } kind;
    tessera::internal::v1::PrefillClientMessage message = {};  // kMessage and kLastMessage.
  };
  void StartFinish(grpc::Status* status, CompletionTag* tag) override {
    stream_->Finish(status, tag);
  }
  void OnReadDone(bool ok) {
    OperationCompleted();
    read_.Complete(ok);
  }
  void OnWriteDone(bool ok);
  // Starts the front of the queue. Requires that no write is in flight.
  void StartFront() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::unique_ptr<grpc::ClientAsyncReaderWriter<tessera::internal::v1::PrefillClientMessage,
                                                tessera::internal::v1::PrefillServerMessage>>
      stream_;
  PendingOperation read_;
  CompletionTag read_done_ = CompletionTag::To<&PrefillCall::OnReadDone>(this);
  CompletionTag write_done_ = CompletionTag::To<&PrefillCall::OnWriteDone>(this);
  absl::Mutex mu_;
  std::deque<Outgoing> outgoing_ ABSL_GUARDED_BY(mu_);  // The front is in flight.
  bool closed_ ABSL_GUARDED_BY(mu_) = false;            // Half-closed, or writes failed.
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_WORKER_CALLS_H_
