#include "engine/server/worker_calls.h"

#include <utility>

namespace tessera::engine::server {

using tessera::internal::v1::DecodeRequest;
using tessera::internal::v1::PrefillClientMessage;

void FinalStatus::Set(const grpc::Status& status) {
  std::coroutine_handle<> waiter;
  {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
    waiter = std::exchange(waiter_, {});
  }
  // The waiter may destroy the call (and this) as soon as it runs.
  if (waiter) waiter.resume();
}

bool FinalStatus::Register(std::coroutine_handle<> waiter) {
  absl::MutexLock lock(&mu_);
  if (done_) return false;
  waiter_ = waiter;
  return true;
}

DecodeCall::DecodeCall(tessera::internal::v1::Worker::Stub& stub,
                       std::unique_ptr<grpc::ClientContext> context, DecodeRequest request)
    : context_(std::move(context)), request_(std::move(request)) {
  stub.async()->Decode(context_.get(), &request_, this);
  AddHold();
  StartCall();
}

PrefillCall::PrefillCall(tessera::internal::v1::Worker::Stub& stub,
                         std::unique_ptr<grpc::ClientContext> context, PrefillClientMessage first)
    : context_(std::move(context)) {
  stub.async()->Prefill(context_.get(), this);
  AddHold();
  Write(std::move(first));
  StartCall();
}

void PrefillCall::Write(PrefillClientMessage message, bool last) {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  closed_ = last;
  outgoing_.push_back(Outgoing{.message = std::move(message), .last = last});
  if (outgoing_.size() == 1) StartFront();
}

void PrefillCall::WritesDone() {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  closed_ = true;
  outgoing_.push_back(Outgoing{.message = std::nullopt, .last = true});
  if (outgoing_.size() == 1) StartFront();
}

void PrefillCall::StartFront() {
  Outgoing& front = outgoing_.front();
  if (!front.message.has_value()) {
    StartWritesDone();
  } else if (front.last) {
    StartWriteLast(&*front.message, grpc::WriteOptions());
  } else {
    StartWrite(&*front.message);
  }
}

void PrefillCall::OnWriteDone(bool ok) { WriteFinished(ok); }
void PrefillCall::OnWritesDoneDone(bool ok) { WriteFinished(ok); }

void PrefillCall::WriteFinished(bool ok) {
  absl::MutexLock lock(&mu_);
  outgoing_.pop_front();
  if (!ok) {
    // The stream is broken: nothing more will go out; the status tells why.
    closed_ = true;
    outgoing_.clear();
    return;
  }
  if (!outgoing_.empty()) StartFront();
}

}  // namespace tessera::engine::server
