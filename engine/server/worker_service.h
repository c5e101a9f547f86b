// The Worker gRPC service: Prefill (compute a prompt's KV and first token, then hold the KV
// for a decode worker) and Decode (import handed-off KV, or compute the prompt here, then
// stream the generated tokens). Each call runs on a gRPC thread that hands work to the step
// thread and streams the request's events back.
// Thread-safety: thread-safe (gRPC calls it concurrently).
#ifndef TESSERA_ENGINE_SERVER_WORKER_SERVICE_H_
#define TESSERA_ENGINE_SERVER_WORKER_SERVICE_H_

#include "engine/server/worker_context.h"
#include "tessera/internal/v1/worker.grpc.pb.h"

namespace tessera::engine::server {

class WorkerService final : public tessera::internal::v1::Worker::Service {
 public:
  explicit WorkerService(WorkerContext& context) : context_(context) {}

  grpc::Status Prefill(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<tessera::internal::v1::PrefillServerMessage,
                               tessera::internal::v1::PrefillClientMessage>* stream) override;
  grpc::Status Decode(
      grpc::ServerContext* context, const tessera::internal::v1::DecodeRequest* request,
      grpc::ServerWriter<tessera::internal::v1::DecodeEvent>* writer) override;

 private:
  WorkerContext& context_;
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_WORKER_SERVICE_H_
