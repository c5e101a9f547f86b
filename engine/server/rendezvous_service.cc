#include "engine/server/rendezvous_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tessera::engine::server {

using tessera::internal::v1::GetKeyRequest;
using tessera::internal::v1::GetKeyResponse;
using tessera::internal::v1::SetKeyRequest;
using tessera::internal::v1::SetKeyResponse;

// A Get parked until its key is set or its call ends. Exactly one of Set and OnCancel
// finishes it (decided under the service's lock).
class RendezvousService::Waiter final : public grpc::ServerUnaryReactor {
 public:
  Waiter(RendezvousService& service, std::string key, GetKeyResponse* response)
      : service_(service), key_(std::move(key)), response_(response) {}

  const std::string& key() const { return key_; }
  void Deliver(const std::string& value) {
    response_->set_value(value);
    Finish(grpc::Status::OK);
  }
  void OnCancel() override { service_.Forget(this); }
  void OnDone() override { delete this; }

 private:
  RendezvousService& service_;
  const std::string key_;
  GetKeyResponse* const response_;
};

RendezvousService::~RendezvousService() = default;

grpc::ServerUnaryReactor* RendezvousService::Set(grpc::CallbackServerContext* context,
                                                 const SetKeyRequest* request, SetKeyResponse*) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (request->key().empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "key is empty"));
    return reactor;
  }
  if (static_cast<int64_t>(request->value().size()) > kMaxValueBytes) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("value is ", request->value().size(),
                                              " bytes; the limit is ", kMaxValueBytes)));
    return reactor;
  }
  std::vector<Waiter*> ready;
  {
    absl::MutexLock lock(&mu_);
    auto it = values_.find(request->key());
    const int64_t old_bytes =
        it == values_.end() ? 0 : static_cast<int64_t>(it->first.size() + it->second.size());
    const int64_t new_bytes = static_cast<int64_t>(request->key().size() + request->value().size());
    if (held_bytes_ - old_bytes + new_bytes > capacity_bytes_) {
      reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   absl::StrCat("the rendezvous store holds ", held_bytes_,
                                                " of its ", capacity_bytes_, " bytes")));
      return reactor;
    }
    held_bytes_ += new_bytes - old_bytes;
    values_[request->key()] = request->value();
    if (auto waiting = waiters_.extract(request->key()); !waiting.empty()) {
      ready = std::move(waiting.mapped());
    }
  }
  for (Waiter* waiter : ready) waiter->Deliver(request->value());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* RendezvousService::Get(grpc::CallbackServerContext* context,
                                                 const GetKeyRequest* request,
                                                 GetKeyResponse* response) {
  absl::MutexLock lock(&mu_);
  if (auto it = values_.find(request->key()); it != values_.end()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    response->set_value(it->second);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  auto* waiter = new Waiter(*this, request->key(), response);
  waiters_[request->key()].push_back(waiter);
  return waiter;
}

void RendezvousService::Forget(Waiter* waiter) {
  {
    absl::MutexLock lock(&mu_);
    auto it = waiters_.find(waiter->key());
    if (it == waiters_.end()) return;  // Already delivered.
    auto& list = it->second;
    auto found = std::find(list.begin(), list.end(), waiter);
    if (found == list.end()) return;
    list.erase(found);
    if (list.empty()) waiters_.erase(it);
  }
  waiter->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                              absl::StrCat("key ", waiter->key(), " was not set in time")));
}

}  // namespace tessera::engine::server
