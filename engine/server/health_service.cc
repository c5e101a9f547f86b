#include "engine/server/health_service.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "engine/server/async_unary_call.h"

namespace tessera::engine::server {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch call: the status goes out at once and again on every change, one write at a time
// (a change during a write is sent after it, as the status then); the call lives until gRPC
// says it is over (the client cancelled, or the server shut down) and no write is in flight.
class WatchCall final : public HealthService::Watcher {
 public:
  static void Await(HealthService& service, CompletionQueueLoop& loop,
                    grpc::ServerCompletionQueue* queue) {
    auto* call = new WatchCall(service, loop, queue);
    call->context_.AsyncNotifyWhenDone(&call->done_);
    service.RequestWatch(&call->context_, &call->request_, &call->writer_, queue, queue,
                         &call->arrived_);
  }

  // Called with the service's watcher lock held, so the call is not yet gone.
  void StatusChanged() override {
    absl::MutexLock lock(&mu_);
    if (writing_) {
      changed_ = true;
    } else {
      WriteStatusIfChanged();
    }
  }

 private:
  WatchCall(HealthService& service, CompletionQueueLoop& loop, grpc::ServerCompletionQueue* queue)
      : live_(loop), service_(service), loop_(loop), queue_(queue) {}

  void OnArrived(bool ok) {
    if (!ok) {  // The server is shutting down; the call never started.
      delete this;
      return;
    }
    Await(service_, loop_, queue_);
    {
      absl::MutexLock lock(&mu_);
      WriteStatusIfChanged();
    }
    service_.AddWatcher(this);
  }
  // Sends the status unless the client already has it (the first time, it never has).
  void WriteStatusIfChanged() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    changed_ = false;
    const HealthCheckResponse::ServingStatus now = service_.StatusOf(request_.service());
    if (now == status_.status()) return;
    writing_ = true;
    status_.set_status(now);
    holders_.fetch_add(1);
    writer_.Write(status_, &written_);
  }
  void OnWritten(bool ok) {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (ok && changed_) WriteStatusIfChanged();
    }
    Release();
  }
  void OnDone(bool) {
    service_.RemoveWatcher(this);  // No change reaches it after this.
    Release();
  }
  // Holds: gRPC's end of the call, and each write in flight.
  void Release() {
    if (holders_.fetch_sub(1) == 1) delete this;
  }

  CompletionQueueLoop::LiveCall live_;
  HealthService& service_;
  CompletionQueueLoop& loop_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  HealthCheckRequest request_;
  grpc::ServerAsyncWriter<HealthCheckResponse> writer_{&context_};
  std::atomic<int> holders_{1};
  absl::Mutex mu_;
  HealthCheckResponse status_ ABSL_GUARDED_BY(mu_);  // The last one written (or being).
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;  // Since the write in flight began.
  CompletionTag arrived_ = CompletionTag::To<&WatchCall::OnArrived>(this);
  CompletionTag written_ = CompletionTag::To<&WatchCall::OnWritten>(this);
  CompletionTag done_ = CompletionTag::To<&WatchCall::OnDone>(this);
};

}  // namespace

HealthService::HealthService(const std::vector<std::string>& services)
    : services_(services.begin(), services.end()) {
  services_.insert("");
}

HealthCheckResponse::ServingStatus HealthService::StatusOf(const std::string& service) const {
  if (!Serves(service)) return HealthCheckResponse::SERVICE_UNKNOWN;
  return serving_.load() ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
}

void HealthService::SetServing(bool serving) {
  absl::MutexLock lock(&mu_);
  if (serving_.exchange(serving) == serving) return;
  for (Watcher* watcher : watchers_) watcher->StatusChanged();
}

void HealthService::AddWatcher(Watcher* watcher) {
  absl::MutexLock lock(&mu_);
  watchers_.insert(watcher);
  // A change between the call's first write and now is sent too.
  watcher->StatusChanged();
}

void HealthService::RemoveWatcher(Watcher* watcher) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(watcher);
}

void HealthService::Serve(CompletionQueueLoop& queues) {
  using CheckCall = AsyncUnaryCall<HealthCheckRequest, HealthCheckResponse>;
  ServeUnary(queues, *this, &HealthService::RequestCheck, [this](CheckCall& call) {
    if (!Serves(call.request().service())) {
      call.Finish(grpc::Status(
          grpc::StatusCode::NOT_FOUND,
          absl::StrCat("service '", call.request().service(), "' is not served here")));
      return;
    }
    call.response()->set_status(StatusOf(call.request().service()));
    call.Finish(grpc::Status::OK);
  });
  for (int i = 0; i < queues.size(); ++i) WatchCall::Await(*this, queues, queues.queue(i));
}

}  // namespace tessera::engine::server
