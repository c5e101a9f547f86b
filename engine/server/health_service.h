// The standard health service (grpc.health.v1.Health) on the router's completion queues, in
// place of gRPC's default one, which runs on the callback API: that API's own threads would
// poll the router's sockets too and hand every completion over to the queue threads.
// Check answers SERVING for the whole server ("") and each service named at construction,
// NOT_FOUND for any other; Watch sends the same status once and holds the stream until the
// client ends it or the server shuts down.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_HEALTH_SERVICE_H_
#define TESSERA_ENGINE_SERVER_HEALTH_SERVICE_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "engine/server/completion_queue_loop.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace tessera::engine::server {

class HealthService final : public grpc::health::v1::Health::AsyncService {
 public:
  explicit HealthService(const std::vector<std::string>& services);

  // Starts taking calls on every queue of `queues`; call once the server is built.
  void Serve(CompletionQueueLoop& queues);

  // Whether `service` is served ("" is the whole server).
  bool Serves(const std::string& service) const { return services_.contains(service); }

 private:
  absl::flat_hash_set<std::string> services_;
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_HEALTH_SERVICE_H_
