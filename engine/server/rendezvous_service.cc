#include "engine/server/rendezvous_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tessera::engine::server {

using tessera::internal::v1::GetKeyRequest;
using tessera::internal::v1::GetKeyResponse;
using tessera::internal::v1::SetKeyRequest;
using tessera::internal::v1::SetKeyResponse;

void RendezvousService::Serve(CompletionQueueLoop& queues) {
  ServeUnary(queues, *this, &RendezvousService::RequestSet, [this](SetCall& call) { Set(call); });
  ServeUnary(queues, *this, &RendezvousService::RequestGet, [this](GetCall& call) { Get(call); });
}

void RendezvousService::Set(SetCall& call) {
  const SetKeyRequest& request = call.request();
  if (request.key().empty()) {
    call.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "key is empty"));
    return;
  }
  if (static_cast<int64_t>(request.value().size()) > kMaxValueBytes) {
    call.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             absl::StrCat("value is ", request.value().size(),
                                          " bytes; the limit is ", kMaxValueBytes)));
    return;
  }
  std::vector<GetCall*> ready;
  {
    absl::MutexLock lock(&mu_);
    auto it = values_.find(request.key());
    const int64_t old_bytes =
        it == values_.end() ? 0 : static_cast<int64_t>(it->first.size() + it->second.size());
    const int64_t new_bytes = static_cast<int64_t>(request.key().size() + request.value().size());
    if (held_bytes_ - old_bytes + new_bytes > capacity_bytes_) {
      call.Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                               absl::StrCat("the rendezvous store holds ", held_bytes_, " of its ",
                                            capacity_bytes_, " bytes")));
      return;
    }
    held_bytes_ += new_bytes - old_bytes;
    values_[request.key()] = request.value();
    if (auto waiting = waiters_.extract(request.key()); !waiting.empty()) {
      ready = std::move(waiting.mapped());
    }
  }
  // Taken from the list under the lock, so no cancel can finish them too.
  for (GetCall* waiter : ready) {
    waiter->response()->set_value(request.value());
    waiter->Finish(grpc::Status::OK);
  }
  call.Finish(grpc::Status::OK);
}

void RendezvousService::Get(GetCall& call) {
  absl::MutexLock lock(&mu_);
  if (auto it = values_.find(call.request().key()); it != values_.end()) {
    call.response()->set_value(it->second);
    call.Finish(grpc::Status::OK);
    return;
  }
  // Parked until a Set brings the key or the call ends (the client's deadline).
  call.OnCancel([this, waiter = &call] { Forget(waiter); });
  waiters_[call.request().key()].push_back(&call);
}

void RendezvousService::Forget(GetCall* waiter) {
  const std::string& key = waiter->request().key();
  {
    absl::MutexLock lock(&mu_);
    auto it = waiters_.find(key);
    if (it == waiters_.end()) return;  // Already delivered.
    auto& list = it->second;
    auto found = std::find(list.begin(), list.end(), waiter);
    if (found == list.end()) return;
    list.erase(found);
    if (list.empty()) waiters_.erase(it);
  }
  waiter->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                              absl::StrCat("key ", key, " was not set in time")));
}

}  // namespace tessera::engine::server
