#include "engine/server/router_services.h"

#include <atomic>
#include <deque>
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "engine/server/proto_convert.h"
#include "engine/server/worker_process.h"

namespace tessera::engine::server {
namespace {

// One Generate call on the asynchronous API: runs the request as a task and streams its
// events to the client through a queue (one write in flight at a time, as gRPC requires). The
// last message leaves together with the OK status, one write, as soon as it arrives.
// Everything but the task's first steps runs on the call's completion queue thread.
class GenerateCall final : public OutputSink {
 public:
  // Waits for the next Generate call on `queue`; the call then serves itself.
  static void Await(InferenceService& service, Frontend& frontend, CompletionQueueLoop& loop,
                    grpc::ServerCompletionQueue* queue) {
    auto* call = new GenerateCall(service, frontend, loop, queue);
    call->context_.AsyncNotifyWhenDone(&call->done_);
    service.RequestGenerate(&call->context_, &call->request_, &call->writer_, queue, queue,
                            &call->arrived_);
  }

  bool Send(const OutputEvent& event) override {
    Outgoing out;
    for (int32_t token : event.token_ids) out.response.add_token_ids(token);
    out.response.set_text(event.text);
    if (!event.finish_reason.empty()) {
      out.response.set_finish_reason(event.finish_reason);
      UsageToProto(event.usage, out.response.mutable_usage());
      out.last = true;
    }
    Step step;
    {
      absl::MutexLock lock(&mu_);
      if (client_gone_) return false;
      outgoing_.push_back(std::move(out));
      step = NextStep();
    }
    Perform(step);
    return true;
  }

 private:
  GenerateCall(InferenceService& service, Frontend& frontend, CompletionQueueLoop& loop,
               grpc::ServerCompletionQueue* queue)
      : live_(loop), service_(service), frontend_(frontend), loop_(loop), queue_(queue) {}

  void OnArrived(bool ok) {
    if (!ok) {  // The server is shutting down; the call never started.
      delete this;
      return;
    }
    // The next call is awaited only once this request's worker calls are on their way: a call
    // arriving meanwhile waits in gRPC, and this one's latency does not include the wait.
    InferenceService& service = service_;
    Frontend& frontend = frontend_;
    CompletionQueueLoop& loop = loop_;
    grpc::ServerCompletionQueue* const queue = queue_;
    parent_.emplace(context_.deadline());
    absl::StatusOr<DispatchJob> job = frontend_.Prepare(request_);
    if (!job.ok()) {
      frontend_.CountRejected("grpc", job.status());
      Complete(ToGrpcStatus(job.status()));
    } else {
      job_ = *std::move(job);
      // Runs until the request first waits on a worker.
      StartDetached<absl::Status>(frontend_.RunAsync(job_, *this, &*parent_, "grpc"),
                                  [this](absl::Status status) { Complete(ToGrpcStatus(status)); });
    }
    Await(service, frontend, loop, queue);
  }

  void OnWriteDone(bool ok) {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      outgoing_.pop_front();
      if (!ok) {
        client_gone_ = true;
        outgoing_.clear();
      }
      step = NextStep();
    }
    Perform(step);
  }

  // The call is over: sent, failed or cancelled. A cancel reaches every worker call.
  void OnDone(bool) {
    if (context_.IsCancelled()) {
      {
        absl::MutexLock lock(&mu_);
        client_gone_ = true;
      }
      if (parent_.has_value()) parent_->Cancel();
    }
    Release();
  }
  void OnEnded(bool) { Release(); }

  struct Outgoing {
    tessera::v1::GenerateResponse response;
    bool last = false;
  };
  // What to start next. Decided under the lock, started after it is released.
  struct Step {
    enum class Kind { kNone, kWrite, kWriteAndFinish, kFinish } kind = Kind::kNone;
    const tessera::v1::GenerateResponse* response = nullptr;
    grpc::Status status;
  };

  // The request's outcome. Sent after what is queued, unless the last message has already
  // ended the call (then the request was complete and this is OK).
  void Complete(grpc::Status status) {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      status_ = std::move(status);
      step = NextStep();
    }
    Perform(step);
    Release();
  }

  // The call lives until the request's task is done, the call's last operation has completed
  // and gRPC has said the call is over (three holds).
  void Release() {
    if (holders_.fetch_sub(1) == 1) delete this;
  }

  // The next write, or the call's end once everything is out.
  Step NextStep() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Step step;
    if (writing_ || finished_) return step;
    if (!outgoing_.empty()) {
      Outgoing& front = outgoing_.front();
      if (!front.last) {
        writing_ = true;
        step.kind = Step::Kind::kWrite;
        step.response = &front.response;
        return step;
      }
      // The request is complete: the last message and the OK status go out together now,
      // without waiting for the task to wind down.
      finished_ = true;
      step.kind = Step::Kind::kWriteAndFinish;
      step.response = &front.response;
      step.status = grpc::Status::OK;
      return step;
    }
    if (status_.has_value()) {
      finished_ = true;
      step.kind = Step::Kind::kFinish;
      step.status = *status_;
    }
    return step;
  }

  void Perform(const Step& step) {
    switch (step.kind) {
      case Step::Kind::kNone:
        return;
      case Step::Kind::kWrite:
        writer_.Write(*step.response, &written_);
        return;
      case Step::Kind::kWriteAndFinish:
        writer_.WriteAndFinish(*step.response, grpc::WriteOptions(), step.status, &ended_);
        return;
      case Step::Kind::kFinish:
        writer_.Finish(step.status, &ended_);
        return;
    }
  }

  CompletionQueueLoop::LiveCall live_;  // Until the task is done and gRPC with the call.
  InferenceService& service_;
  Frontend& frontend_;
  CompletionQueueLoop& loop_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  tessera::v1::GenerateRequest request_;
  grpc::ServerAsyncWriter<tessera::v1::GenerateResponse> writer_{&context_};
  CompletionTag arrived_ = CompletionTag::To<&GenerateCall::OnArrived>(this);
  CompletionTag written_ = CompletionTag::To<&GenerateCall::OnWriteDone>(this);
  CompletionTag ended_ = CompletionTag::To<&GenerateCall::OnEnded>(this);
  CompletionTag done_ = CompletionTag::To<&GenerateCall::OnDone>(this);
  std::optional<ParentCall> parent_;  // From the call's arrival.
  DispatchJob job_;
  std::atomic<int> holders_{3};
  absl::Mutex mu_;
  std::deque<Outgoing> outgoing_ ABSL_GUARDED_BY(mu_);  // The front is in flight if writing_.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

void InferenceService::ServeGenerate(CompletionQueueLoop& queues) {
  for (int i = 0; i < queues.size(); ++i) {
    GenerateCall::Await(*this, frontend_, queues, queues.queue(i));
  }
}

grpc::Status InferenceService::Tokenize(grpc::ServerContext*,
                                        const tessera::v1::TokenizeRequest* request,
                                        tessera::v1::TokenizeResponse* response) {
  if (absl::Status s = frontend_.CheckModel(request->model()); !s.ok()) return ToGrpcStatus(s);
  for (int32_t id : frontend_.tokenizer().Encode(request->text(), /*parse_special=*/true)) {
    response->add_token_ids(id);
  }
  return grpc::Status::OK;
}

grpc::Status InferenceService::ListModels(grpc::ServerContext*,
                                          const tessera::v1::ListModelsRequest*,
                                          tessera::v1::ListModelsResponse* response) {
  tessera::v1::ModelInfo* model = response->add_models();
  model->set_id(frontend_.model_id());
  model->set_context_length(frontend_.context_length());
  return grpc::Status::OK;
}

grpc::Status AdminService::ListWorkers(grpc::ServerContext*, const tessera::v1::ListWorkersRequest*,
                                       tessera::v1::ListWorkersResponse* response) {
  for (tessera::v1::WorkerStatus& status : registry_.List()) {
    *response->add_workers() = std::move(status);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::DrainWorker(grpc::ServerContext*,
                                       const tessera::v1::DrainWorkerRequest* request,
                                       tessera::v1::DrainWorkerResponse*) {
  if (request->worker_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "worker_id is empty");
  }
  absl::Status status = registry_.Drain(request->worker_id());
  if (status.ok()) std::cerr << "tessera router: draining " << request->worker_id() << std::endl;
  return ToGrpcStatus(status);
}

grpc::Status ControlService::Register(grpc::ServerContext*,
                                      const tessera::internal::v1::RegisterRequest* request,
                                      tessera::internal::v1::RegisterResponse* response) {
  if (request->address().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "address is empty");
  }
  if (request->role() == tessera::internal::v1::ROLE_UNSPECIFIED) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "role is unspecified");
  }
  response->set_worker_id(registry_.Register(*request));
  std::cerr << "tessera router: " << response->worker_id() << " joined at "
            << request->address() << std::endl;
  return grpc::Status::OK;
}

grpc::Status ControlService::Heartbeat(grpc::ServerContext*,
                                       const tessera::internal::v1::HeartbeatRequest* request,
                                       tessera::internal::v1::HeartbeatResponse* response) {
  *response = registry_.Heartbeat(*request);
  return grpc::Status::OK;
}

grpc::Status ControlService::Deregister(grpc::ServerContext*,
                                        const tessera::internal::v1::DeregisterRequest* request,
                                        tessera::internal::v1::DeregisterResponse*) {
  registry_.Deregister(request->worker_id());
  std::cerr << "tessera router: " << request->worker_id() << " left" << std::endl;
  return grpc::Status::OK;
}

grpc::Status ControlService::PublishKvEvents(grpc::ServerContext*,
                                             const tessera::internal::v1::KvEvents* request,
                                             tessera::internal::v1::KvEventsAck* response) {
  response->set_need_snapshot(!registry_.ApplyKvEvents(*request));
  return grpc::Status::OK;
}

}  // namespace tessera::engine::server
