// A worker's side of the KV cache pool: which `tessera cache` servers are alive (from the
// router's heartbeat replies), which one owns each block (consistent hashing), putting the
// blocks this worker computes (in the background, dropped if the queue is full) and getting
// blocks it lacks (with a short deadline). A cache server that fails or dies only costs cache
// misses: errors here are never the request's.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_CACHE_POOL_CLIENT_H_
#define TESSERA_ENGINE_SERVER_CACHE_POOL_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/server/channel_pool.h"
#include "kvcache/consistent_hash_ring.h"

namespace tessera::engine::server {

class CachePoolClient {
 public:
  explicit CachePoolClient(ChannelPool& channels);
  ~CachePoolClient();

  void SetServers(std::vector<std::string> servers);
  bool has_servers() const;

  // Queues blocks to store in the pool.
  void Put(std::vector<std::pair<uint64_t, std::string>> blocks);
  // The leading run of `hashes` the pool holds, with their bytes.
  std::vector<std::string> GetLeading(const std::vector<uint64_t>& hashes);

  int64_t lookups() const { return lookups_.load(); }
  int64_t hits() const { return hits_.load(); }
  int64_t puts() const { return puts_.load(); }

 private:
  void RunPutter();

  ChannelPool& channels_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const kvcache::ConsistentHashRing> ring_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<uint64_t, std::string>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int64_t> lookups_{0}, hits_{0}, puts_{0};
  std::thread putter_;
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_CACHE_POOL_CLIENT_H_
