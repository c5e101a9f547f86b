#include "engine/server/worker_calls.h"

#include <utility>

namespace tessera::engine::server {

using tessera::internal::v1::DecodeRequest;
using tessera::internal::v1::PrefillClientMessage;

WorkerCall::WorkerCall(CompletionQueueLoop& loop, grpc::CompletionQueue* queue,
                       std::unique_ptr<grpc::ClientContext> context, ParentCall* parent)
    : live_(loop),
      queue_(queue != nullptr ? queue : loop.ForNewCall()),
      context_(std::move(context)),
      parent_(parent) {
  if (parent_ != nullptr) parent_->Track(context_.get());
}

void WorkerCall::SetParent(ParentCall* parent) {
  parent_ = parent;
  if (parent_ != nullptr) parent_->Track(context_.get());
}

WorkerCall::~WorkerCall() {
  // The parent must never cancel a context that is gone.
  if (parent_ != nullptr) parent_->Untrack(context_.get());
}

void WorkerCall::OperationStarted() {
  absl::MutexLock lock(&mu_);
  ++in_flight_;
}

void WorkerCall::OperationCompleted() {
  std::coroutine_handle<> waiter;
  {
    absl::MutexLock lock(&mu_);
    --in_flight_;
    waiter = TakeWaiterIfDone();
  }
  // The waiter may destroy the call as soon as it runs.
  if (waiter) waiter.resume();
}

void WorkerCall::OnFinished(bool) {
  std::coroutine_handle<> waiter;
  {
    absl::MutexLock lock(&mu_);
    finish_completed_ = true;
    waiter = TakeWaiterIfDone();
  }
  if (waiter) waiter.resume();
}

std::coroutine_handle<> WorkerCall::TakeWaiterIfDone() {
  if (!finish_completed_ || in_flight_ > 0 || !finish_waiter_) return {};
  return std::exchange(finish_waiter_, {});
}

void WorkerCall::FinishAwaiter::await_suspend(std::coroutine_handle<> waiter) {
  {
    absl::MutexLock lock(&call.mu_);
    call.finish_waiter_ = waiter;
  }
  // May complete, and resume the waiter, on another thread before this returns.
  call.StartFinish(&call.status_, &call.finished_);
}

DecodeCall::DecodeCall(tessera::internal::v1::Worker::Stub& stub, CompletionQueueLoop& loop,
                       std::unique_ptr<grpc::ClientContext> context, ParentCall* parent,
                       const DecodeRequest& request)
    : WorkerCall(loop, /*queue=*/nullptr, std::move(context), parent) {
  stream_ = stub.PrepareAsyncDecode(context_.get(), request, queue_);
  OperationStarted();
  stream_->StartCall(&started_);
}

PrefillCall::PrefillCall(tessera::internal::v1::Worker::Stub& stub, CompletionQueueLoop& loop,
                         std::unique_ptr<grpc::ClientContext> context, ParentCall* parent,
                         PrefillClientMessage first)
    : WorkerCall(loop, /*queue=*/nullptr, std::move(context), parent) {
  // The call's headers go out with the first message in one write instead of a round of
  // their own.
  context_->set_initial_metadata_corked(true);
  stream_ = stub.PrepareAsyncPrefill(context_.get(), queue_);
  stream_->StartCall(&started_);  // Corked: no operation, and its tag never completes.
  Write(std::move(first));
}

PrefillCall::PrefillCall(tessera::internal::v1::Worker::Stub& stub, CompletionQueueLoop& loop,
                         grpc::CompletionQueue* queue, std::unique_ptr<grpc::ClientContext> context)
    : WorkerCall(loop, queue, std::move(context), /*parent=*/nullptr) {
  stream_ = stub.PrepareAsyncPrefill(context_.get(), queue_);
  absl::MutexLock lock(&mu_);
  // The headers hold the front of the write queue until they are out (see Outgoing).
  outgoing_.push_back(Outgoing{.kind = Outgoing::Kind::kHeaders});
  StartFront();
}

void PrefillCall::Write(PrefillClientMessage message, bool last) {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  closed_ = last;
  outgoing_.push_back(
      Outgoing{.kind = last ? Outgoing::Kind::kLastMessage : Outgoing::Kind::kMessage,
               .message = std::move(message)});
  if (outgoing_.size() == 1) StartFront();
}

void PrefillCall::WritesDone() {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  closed_ = true;
  outgoing_.push_back(Outgoing{.kind = Outgoing::Kind::kWritesDone});
  if (outgoing_.size() == 1) StartFront();
}

void PrefillCall::StartFront() {
  OperationStarted();
  Outgoing& front = outgoing_.front();
  switch (front.kind) {
    case Outgoing::Kind::kHeaders:
      stream_->StartCall(&write_done_);
      return;
    case Outgoing::Kind::kMessage:
      stream_->Write(front.message, &write_done_);
      return;
    case Outgoing::Kind::kLastMessage:
      stream_->WriteLast(front.message, grpc::WriteOptions(), &write_done_);
      return;
    case Outgoing::Kind::kWritesDone:
      stream_->WritesDone(&write_done_);
      return;
  }
}

void PrefillCall::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    outgoing_.pop_front();
    if (!ok) {
      // The stream is broken: nothing more will go out; the status tells why.
      closed_ = true;
      outgoing_.clear();
    } else if (!outgoing_.empty()) {
      StartFront();
    }
  }
  OperationCompleted();  // Last: it may let Finish resume and destroy the call.
}

}  // namespace tessera::engine::server
