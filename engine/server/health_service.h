// The standard health service (grpc.health.v1.Health) on the router's completion queues, in
// place of gRPC's default one, which runs on the callback API: that API's own threads would
// poll the router's sockets too and hand every completion over to the queue threads.
// Check answers, for the whole server ("") and each service named at construction, SERVING
// until the router starts shutting down and NOT_SERVING from then on; NOT_FOUND for any other
// service. Watch sends the status at once and again whenever it changes (SERVICE_UNKNOWN for
// a service not served), and holds the stream until the client ends it or the server shuts
// down: a load balancer watching learns of a shutdown before the connection goes.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_HEALTH_SERVICE_H_
#define TESSERA_ENGINE_SERVER_HEALTH_SERVICE_H_

#include <atomic>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
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

  // Sets the status of every served service and sends it to every open Watch.
  void SetServing(bool serving);

  // What Check and Watch report for `service` now.
  grpc::health::v1::HealthCheckResponse::ServingStatus StatusOf(const std::string& service) const;

  // An open Watch call, told of every change while registered.
  class Watcher {
   public:
    virtual ~Watcher() = default;
    virtual void StatusChanged() = 0;
  };
  void AddWatcher(Watcher* watcher);
  void RemoveWatcher(Watcher* watcher);

 private:
  absl::flat_hash_set<std::string> services_;
  std::atomic<bool> serving_{true};
  absl::Mutex mu_;
  absl::flat_hash_set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_HEALTH_SERVICE_H_
