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

// One Generate call: runs the request as a task and streams its events to the client through
// a queue (one write in flight at a time, as gRPC requires). The last message leaves together
// with the OK status, one write, as soon as it arrives.
class GenerateReactor final : public grpc::ServerWriteReactor<tessera::v1::GenerateResponse>,
                              public OutputSink {
 public:
  GenerateReactor(Frontend& frontend, grpc::CallbackServerContext* context,
                  const tessera::v1::GenerateRequest& request) {
    absl::StatusOr<DispatchJob> job = frontend.Prepare(request);
    if (!job.ok()) {
      frontend.CountRejected("grpc", job.status());
      holders_.store(1);  // No task.
      Finish(ToGrpcStatus(job.status()));
      return;
    }
    job_ = *std::move(job);
    StartDetached<absl::Status>(frontend.RunAsync(job_, *this, context, "grpc"),
                                [this](absl::Status status) { Complete(ToGrpcStatus(status)); });
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

  void OnWriteDone(bool ok) override {
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
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    client_gone_ = true;
  }
  void OnDone() override { Release(); }

 private:
  struct Outgoing {
    tessera::v1::GenerateResponse response;
    bool last = false;
  };
  // What to start next. Decided under the lock, started after it is released: finishing may
  // run OnDone (which deletes this) at once, on this thread or another.
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

  // The reactor lives until both gRPC (OnDone) and the task (Complete) are done with it: the
  // call may end as soon as the last message is out, while the task still winds down.
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

  // The last use of `this` by the calling thread.
  void Perform(const Step& step) {
    switch (step.kind) {
      case Step::Kind::kNone:
        return;
      case Step::Kind::kWrite:
        StartWrite(step.response);
        return;
      case Step::Kind::kWriteAndFinish:
        StartWriteAndFinish(step.response, grpc::WriteOptions(), step.status);
        return;
      case Step::Kind::kFinish:
        Finish(step.status);
        return;
    }
  }

  DispatchJob job_;
  std::atomic<int> holders_{2};
  absl::Mutex mu_;
  std::deque<Outgoing> outgoing_ ABSL_GUARDED_BY(mu_);  // The front is in flight if writing_.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerWriteReactor<tessera::v1::GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* context, const tessera::v1::GenerateRequest* request) {
  return new GenerateReactor(frontend_, context, *request);
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* context,
                                                     const tessera::v1::TokenizeRequest* request,
                                                     tessera::v1::TokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = frontend_.CheckModel(request->model()); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  for (int32_t id : frontend_.tokenizer().Encode(request->text(), /*parse_special=*/true)) {
    response->add_token_ids(id);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* context,
                                                       const tessera::v1::ListModelsRequest*,
                                                       tessera::v1::ListModelsResponse* response) {
  tessera::v1::ModelInfo* model = response->add_models();
  model->set_id(frontend_.model_id());
  model->set_context_length(frontend_.context_length());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
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
