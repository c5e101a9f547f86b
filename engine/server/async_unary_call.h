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
#include <type_traits>
#include <utility>

#include "engine/server/completion_queue_loop.h"

namespace tessera::engine::server {

template <typename Request, typename Response>
class AsyncUnaryCall {
 public:
  // How a method's calls are requested (the async service's RequestX) and handled; made by
  // ServeUnary.
  struct Method {
    std::function<void(grpc::ServerContext*, Request*, grpc::ServerAsyncResponseWriter<Response>*,
                       grpc::ServerCompletionQueue*, void*)>
        request;
    std::function<void(AsyncUnaryCall&)> handle;
    CompletionQueueLoop* loop = nullptr;
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
  CompletionTag arrived_ = CompletionTag::To<&AsyncUnaryCall::OnArrived>(this);
  CompletionTag finished_ = CompletionTag::To<&AsyncUnaryCall::OnFinished>(this);
  CompletionTag done_ = CompletionTag::To<&AsyncUnaryCall::OnDone>(this);
};

// Serves one method of `service` on every queue of `queues`: `request` is the generated
// RequestX of its asynchronous service (e.g. &Health::AsyncService::RequestCheck), `handle`
// gets each call.
template <typename AsyncService, typename Request, typename Response>
void ServeUnary(
    CompletionQueueLoop& queues, std::type_identity_t<AsyncService>& service,
    void (AsyncService::*request)(grpc::ServerContext*, Request*,
                                  grpc::ServerAsyncResponseWriter<Response>*,
                                  grpc::CompletionQueue*, grpc::ServerCompletionQueue*, void*),
    std::type_identity_t<std::function<void(AsyncUnaryCall<Request, Response>&)>> handle) {
  using Call = AsyncUnaryCall<Request, Response>;
  auto method = std::make_shared<typename Call::Method>();
  method->request = [&service, request](grpc::ServerContext* context, Request* message,
                                        grpc::ServerAsyncResponseWriter<Response>* responder,
                                        grpc::ServerCompletionQueue* queue, void* tag) {
    (service.*request)(context, message, responder, queue, queue, tag);
  };
  method->handle = std::move(handle);
  method->loop = &queues;
  for (int i = 0; i < queues.size(); ++i) Call::Await(method, queues.queue(i));
}

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_ASYNC_UNARY_CALL_H_
