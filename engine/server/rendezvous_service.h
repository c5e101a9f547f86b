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
#include "tessera/internal/v1/rendezvous.grpc.pb.h"

namespace tessera::engine::server {

class RendezvousService final : public tessera::internal::v1::Rendezvous::CallbackService {
 public:
  static constexpr int64_t kMaxValueBytes = 1 << 20;

  // `capacity_bytes` bounds keys plus values held.
  explicit RendezvousService(int64_t capacity_bytes = 64 << 20) : capacity_bytes_(capacity_bytes) {}
  ~RendezvousService() override;

  grpc::ServerUnaryReactor* Set(grpc::CallbackServerContext* context,
                                const tessera::internal::v1::SetKeyRequest* request,
                                tessera::internal::v1::SetKeyResponse* response) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context,
                                const tessera::internal::v1::GetKeyRequest* request,
                                tessera::internal::v1::GetKeyResponse* response) override;

 private:
  class Waiter;
  // Called by a waiter that ends without the key (timeout or cancel).
  void Forget(Waiter* waiter);

  const int64_t capacity_bytes_;
  absl::Mutex mu_;
  int64_t held_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<Waiter*>> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_RENDEZVOUS_SERVICE_H_
