// One unary call of a method on gRPC's asynchronous API, served on a CompletionQueueLoop
// queue: the handler gets the call when it arrives and finishes it, at once or later (a
// Rendezvous Get waits for its key). The next call of the method is awaited as soon as one
// arrives. The call deletes itself once its Finish has completed and gRPC has said the call is
// over.
// Thread-safety: Finish may be called from any thread, once.
#ifndef TESSERA_ENGINE_SERVER_ASYNC_UNARY_CALL_H_
#define TESSERA_ENGINE_SERVER_ASYNC_UNARY_CALL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <utility>

#include "engine/server/completion_queue_loop.h"

namespace tessera::engine::server {

template <typename Request, typename Response>
class AsyncUnaryCall {
 public:
  // How a method's calls are requested (the async service's RequestX) and handled.
  struct Method {
    std::function<void(grpc::ServerContext*, Request*, grpc::ServerAsyncResponseWriter<Response>*,
                       grpc::ServerCompletionQueue*, void*)>
        request;
    std::function<void(AsyncUnaryCall&)> handle;
    CompletionQueueLoop* loop = nullptr;  // Set by ServeUnary.
  };

  // Waits for the next call of `method` on `queue`.
  static void Await(std::shared_ptr<const Method> method, grpc::ServerCompletionQueue* queue) {
    auto* call = new AsyncUnaryCall(std::move(method), queue);
    call->context_.AsyncNotifyWhenDone(&call->done_);
    call->method_->request(&call->context_, &call->request_, &call->responder_, queue,
                           &call->arrived_);
  }

  const Request& request() const { return request_; }
  Response* response() { return &response_; }
  // Called if the client cancels (or its deadline passes) before the call is over; set by
  // the handler, on the call's queue thread.
  void OnCancel(std::function<void()> on_cancel) { on_cancel_ = std::move(on_cancel); }

  // Sends the response (on OK) or the error. Once.
  void Finish(const grpc::Status& status) {
    if (status.ok()) {
      responder_.Finish(response_, status, &finished_);
    } else {
      responder_.FinishWithError(status, &finished_);
    }
  }

 private:
  AsyncUnaryCall(std::shared_ptr<const Method> method, grpc::ServerCompletionQueue* queue)
      : live_(*method->loop), method_(std::move(method)), queue_(queue) {}

  void OnArrived(bool ok) {
    if (!ok) {  // The server is shutting down; the call never started.
      delete this;
      return;
    }
    Await(method_, queue_);
    method_->handle(*this);
  }
  void OnFinished(bool) { Release(); }
  void OnDone(bool) {
    if (context_.IsCancelled() && on_cancel_) on_cancel_();
    Release();
  }
  // Two holds: the Finish operation and gRPC's end of the call.
  void Release() {
    if (holders_.fetch_sub(1) == 1) delete this;
  }

  CompletionQueueLoop::LiveCall live_;
  const std::shared_ptr<const Method> method_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  Request request_;
  Response response_;
  grpc::ServerAsyncResponseWriter<Response> responder_{&context_};
  std::function<void()> on_cancel_;
  std::atomic<int> holders_{2};
  MemberTag<AsyncUnaryCall> arrived_{this, &AsyncUnaryCall::OnArrived};
  MemberTag<AsyncUnaryCall> finished_{this, &AsyncUnaryCall::OnFinished};
  MemberTag<AsyncUnaryCall> done_{this, &AsyncUnaryCall::OnDone};
};

// Serves `method` on every queue of `queues`.
template <typename Request, typename Response>
void ServeUnary(CompletionQueueLoop& queues,
                typename AsyncUnaryCall<Request, Response>::Method method) {
  method.loop = &queues;
  auto shared =
      std::make_shared<const typename AsyncUnaryCall<Request, Response>::Method>(std::move(method));
  for (int i = 0; i < queues.size(); ++i) {
    AsyncUnaryCall<Request, Response>::Await(shared, queues.queue(i));
  }
}

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_ASYNC_UNARY_CALL_H_
