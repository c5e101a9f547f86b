// The router's gRPC services: the public Inference API, the Admin API, and Control (worker
// registration and heartbeats).
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_ROUTER_SERVICES_H_
#define TESSERA_ENGINE_SERVER_ROUTER_SERVICES_H_

#include "engine/server/completion_queue_loop.h"
#include "engine/server/frontend.h"
#include "engine/server/worker_registry.h"
#include "tessera/internal/v1/worker.grpc.pb.h"
#include "tessera/v1/admin.grpc.pb.h"
#include "tessera/v1/inference.grpc.pb.h"

namespace tessera::engine::server {

// Generate runs on the asynchronous API, on the completion queues of a CompletionQueueLoop:
// a request occupies no thread while it waits on workers, its messages to the client are
// queued, never waited for, and each queue's one thread does all of a request's work. The
// small unary methods run on gRPC's synchronous thread pool.
class InferenceService final
    : public tessera::v1::Inference::WithAsyncMethod_Generate<tessera::v1::Inference::Service> {
 public:
  explicit InferenceService(Frontend& frontend) : frontend_(frontend) {}

  // Starts taking Generate calls on every queue of `queues`; call once the server is built.
  void ServeGenerate(CompletionQueueLoop& queues);

  grpc::Status Tokenize(grpc::ServerContext* context, const tessera::v1::TokenizeRequest* request,
                        tessera::v1::TokenizeResponse* response) override;
  grpc::Status ListModels(grpc::ServerContext* context,
                          const tessera::v1::ListModelsRequest* request,
                          tessera::v1::ListModelsResponse* response) override;

 private:
  Frontend& frontend_;
};

class AdminService final : public tessera::v1::Admin::Service {
 public:
  explicit AdminService(WorkerRegistry& registry) : registry_(registry) {}

  grpc::Status ListWorkers(grpc::ServerContext* context,
                           const tessera::v1::ListWorkersRequest* request,
                           tessera::v1::ListWorkersResponse* response) override;
  grpc::Status DrainWorker(grpc::ServerContext* context,
                           const tessera::v1::DrainWorkerRequest* request,
                           tessera::v1::DrainWorkerResponse* response) override;

 private:
  WorkerRegistry& registry_;
};

class ControlService final : public tessera::internal::v1::Control::Service {
 public:
  explicit ControlService(WorkerRegistry& registry) : registry_(registry) {}

  grpc::Status Register(grpc::ServerContext* context,
                        const tessera::internal::v1::RegisterRequest* request,
                        tessera::internal::v1::RegisterResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context,
                         const tessera::internal::v1::HeartbeatRequest* request,
                         tessera::internal::v1::HeartbeatResponse* response) override;
  grpc::Status Deregister(grpc::ServerContext* context,
                          const tessera::internal::v1::DeregisterRequest* request,
                          tessera::internal::v1::DeregisterResponse* response) override;
  grpc::Status PublishKvEvents(grpc::ServerContext* context,
                               const tessera::internal::v1::KvEvents* request,
                               tessera::internal::v1::KvEventsAck* response) override;

 private:
  WorkerRegistry& registry_;
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_ROUTER_SERVICES_H_
