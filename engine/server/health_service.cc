#include "engine/server/health_service.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "engine/server/async_unary_call.h"

namespace tessera::engine::server {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch call: the status goes out once; the call then lives until gRPC says it is over
// (the client cancelled, or the server shut down).
class WatchCall {
 public:
  static void Await(HealthService& service, CompletionQueueLoop& loop,
                    grpc::ServerCompletionQueue* queue) {
    auto* call = new WatchCall(service, loop, queue);
    call->context_.AsyncNotifyWhenDone(&call->done_);
    service.RequestWatch(&call->context_, &call->request_, &call->writer_, queue, queue,
                         &call->arrived_);
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
    status_.set_status(service_.Serves(request_.service()) ? HealthCheckResponse::SERVING
                                                           : HealthCheckResponse::SERVICE_UNKNOWN);
    writer_.Write(status_, &written_);
  }
  // Two holds: the write and gRPC's end of the call.
  void Release() {
    if (holders_.fetch_sub(1) == 1) delete this;
  }

  CompletionQueueLoop::LiveCall live_;
  HealthService& service_;
  CompletionQueueLoop& loop_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  HealthCheckRequest request_;
  HealthCheckResponse status_;
  grpc::ServerAsyncWriter<HealthCheckResponse> writer_{&context_};
  std::atomic<int> holders_{2};
  CompletionTag arrived_ = CompletionTag::To<&WatchCall::OnArrived>(this);
  CompletionTag written_ = CompletionTag::To<&WatchCall::OnWritten>(this);
  CompletionTag done_ = CompletionTag::To<&WatchCall::OnDone>(this);
  void OnWritten(bool) { Release(); }
  void OnDone(bool) { Release(); }
};

}  // namespace

HealthService::HealthService(const std::vector<std::string>& services)
    : services_(services.begin(), services.end()) {
  services_.insert("");
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
    call.response()->set_status(HealthCheckResponse::SERVING);
    call.Finish(grpc::Status::OK);
  });
  for (int i = 0; i < queues.size(); ++i) WatchCall::Await(*this, queues, queues.queue(i));
}

}  // namespace tessera::engine::server
