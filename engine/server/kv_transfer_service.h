// The source side of a KV handoff: KvTransfer::Pull streams a held prefill's KV to the decode
// worker that asks for it, layer by layer as each layer is computed, so the transfer overlaps
// the rest of the prefill. A puller on the same host gets only progress messages and copies
// the rows itself out of this worker's shared-memory cache; a remote puller gets the rows in
// the messages.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_KV_TRANSFER_SERVICE_H_
#define TESSERA_ENGINE_SERVER_KV_TRANSFER_SERVICE_H_

#include "engine/server/worker_context.h"
#include "tessera/internal/v1/worker.grpc.pb.h"

namespace tessera::engine::server {

class KvTransferService final : public tessera::internal::v1::KvTransfer::Service {
 public:
  explicit KvTransferService(WorkerContext& context) : context_(context) {}

  grpc::Status Pull(grpc::ServerContext* context,
                    const tessera::internal::v1::PullRequest* request,
                    grpc::ServerWriter<tessera::internal::v1::PullResponse>* writer) override;

 private:
  WorkerContext& context_;
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_KV_TRANSFER_SERVICE_H_
