// The router's Rendezvous service (proto/tessera/internal/v1/rendezvous.proto): a bounded
// key-value store in memory where process groups meet. A Get for a key not yet set waits,
// holding no thread, until a Set brings it or the wait's time runs out.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_RENDEZVOUS_SERVICE_H_
#define TESSERA_ENGINE_SERVER_RENDEZVOUS_SERVICE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "engine/server/async_unary_call.h"
#include "engine/server/completion_queue_loop.h"
#include "tessera/internal/v1/rendezvous.grpc.pb.h"

namespace tessera::engine::server {

// On gRPC's asynchronous API, on the router's CompletionQueueLoop: a parked Get holds no
// thread.
class RendezvousService final : public tessera::internal::v1::Rendezvous::AsyncService {
 public:
  static constexpr int64_t kMaxValueBytes = 1 << 20;

  // `capacity_bytes` bounds keys plus values held.
  explicit RendezvousService(int64_t capacity_bytes = 64 << 20) : capacity_bytes_(capacity_bytes) {}

  // Starts taking calls on every queue of `queues`; call once the server is built.
  void Serve(CompletionQueueLoop& queues);

 private:
  using SetCall =
      AsyncUnaryCall<tessera::internal::v1::SetKeyRequest, tessera::internal::v1::SetKeyResponse>;
  using GetCall =
      AsyncUnaryCall<tessera::internal::v1::GetKeyRequest, tessera::internal::v1::GetKeyResponse>;
  void Set(SetCall& call);
  void Get(GetCall& call);
  // Ends a parked Get whose call was cancelled or ran out of time, unless a Set took it.
  void Forget(GetCall* waiter);

  const int64_t capacity_bytes_;
  absl::Mutex mu_;
  int64_t held_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<GetCall*>> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_RENDEZVOUS_SERVICE_H_
