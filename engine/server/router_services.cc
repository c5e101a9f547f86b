#include "engine/server/router_services.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "engine/server/proto_convert.h"
#include "engine/server/worker_process.h"

namespace tessera::engine::server {
namespace {

class GrpcSink final : public OutputSink {
 public:
  explicit GrpcSink(grpc::ServerWriter<tessera::v1::GenerateResponse>* writer) : writer_(writer) {}

  bool Send(const OutputEvent& event) override {
    tessera::v1::GenerateResponse response;
    for (int32_t token : event.token_ids) response.add_token_ids(token);
    response.set_text(event.text);
    if (!event.finish_reason.empty()) {
      response.set_finish_reason(event.finish_reason);
      UsageToProto(event.usage, response.mutable_usage());
      // The last message leaves together with the call's status: one write, not two.
      writer_->WriteLast(response, grpc::WriteOptions());
      return true;
    }
    return writer_->Write(response);
  }

 private:
  grpc::ServerWriter<tessera::v1::GenerateResponse>* writer_;
};

}  // namespace

grpc::Status InferenceService::Generate(grpc::ServerContext* context,
                                        const tessera::v1::GenerateRequest* request,
                                        grpc::ServerWriter<tessera::v1::GenerateResponse>* writer) {
  absl::StatusOr<DispatchJob> job = frontend_.Prepare(*request);
  if (!job.ok()) {
    frontend_.CountRejected("grpc", job.status());
    return ToGrpcStatus(job.status());
  }
  GrpcSink sink(writer);
  return ToGrpcStatus(frontend_.Run(*job, sink, context, "grpc"));
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
