// The decode side of a KV handoff: pulls a held prefill's KV from the prefill worker's
// KvTransfer service into blocks reserved in this worker's cache, layer by layer as the
// source computes them. On the same host it maps the source's shared-memory cache and copies
// rows straight out of it; otherwise the rows come in the messages.
// Thread-safety: thread-safe; Pull() runs on the calling (RPC handler) thread and writes only
// the slot's blocks, which the step loop leaves alone while the import is open.
#ifndef TESSERA_ENGINE_SERVER_KV_PULLER_H_
#define TESSERA_ENGINE_SERVER_KV_PULLER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/runtime/step_loop.h"
#include "engine/server/channel_pool.h"
#include "kvcache/paged_kv_cache.h"
#include "kvcache/shared_memory.h"
#include "tessera/internal/v1/worker.pb.h"

namespace tessera::engine::server {

struct KvPullResult {
  std::vector<int32_t> generated;  // What the prefill sampled after the imported positions.
  int64_t bytes = 0;               // KV bytes copied into this worker's cache.
  bool shared_memory = false;
};

class KvPuller {
 public:
  // `fail_first_pulls` injects faults for failure tests: that many pulls break off after
  // their first chunk, as if the link dropped.
  KvPuller(ChannelPool& channels, std::string local_host_id, bool force_network,
           int32_t fail_first_pulls = 0)
      : channels_(channels), local_host_id_(std::move(local_host_id)),
        force_network_(force_network), faults_left_(fail_first_pulls) {}

  // Copies every position of `slot` from `source` into `cache`. `parent` (may be null) bounds
  // the pull by its deadline and cancellation. Unavailable if the source cannot be reached,
  // Aborted if it released the KV, FailedPrecondition if the two caches' shapes disagree,
  // DataLoss if the source sends something malformed.
  absl::StatusOr<KvPullResult> Pull(const tessera::internal::v1::KvSource& source,
                                    const ImportSlot& slot, kvcache::PagedKvCache& cache,
                                    grpc::ServerContext* parent);

  int64_t total_bytes() const { return total_bytes_.load(); }
  int64_t shared_memory_pulls() const { return shared_memory_pulls_.load(); }
  int64_t network_pulls() const { return network_pulls_.load(); }

 private:
  absl::StatusOr<std::shared_ptr<kvcache::SharedMemoryRegion>> MapPeer(const std::string& name,
                                                                       size_t bytes);

  ChannelPool& channels_;
  const std::string local_host_id_;
  const bool force_network_;
  std::atomic<int32_t> faults_left_;
  std::atomic<int64_t> total_bytes_{0};
  std::atomic<int64_t> shared_memory_pulls_{0};
  std::atomic<int64_t> network_pulls_{0};
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<kvcache::SharedMemoryRegion>> peers_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_KV_PULLER_H_
