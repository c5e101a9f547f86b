#include "engine/server/cache_pool_client.h"

#include "absl/container/flat_hash_map.h"
#include "tessera/internal/v1/cache.grpc.pb.h"

namespace tessera::engine::server {
namespace {

// Blocks waiting to be put; past this, new ones are dropped (the pool is a cache).
constexpr size_t kMaxQueuedBlocks = 4096;
constexpr auto kGetDeadline = std::chrono::milliseconds(500);
constexpr auto kPutDeadline = std::chrono::seconds(2);

}  // namespace

CachePoolClient::CachePoolClient(ChannelPool& channels) : channels_(channels) {
  putter_ = std::thread([this] { RunPutter(); });
}

CachePoolClient::~CachePoolClient() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  putter_.join();
}

void CachePoolClient::SetServers(std::vector<std::string> servers) {
  auto ring = std::make_shared<const kvcache::ConsistentHashRing>(std::move(servers));
  absl::MutexLock lock(&mu_);
  if (ring_ != nullptr && ring_->nodes() == ring->nodes()) return;
  ring_ = std::move(ring);
}

bool CachePoolClient::has_servers() const {
  absl::MutexLock lock(&mu_);
  return ring_ != nullptr && !ring_->nodes().empty();
}

void CachePoolClient::Put(std::vector<std::pair<uint64_t, std::string>> blocks) {
  absl::MutexLock lock(&mu_);
  if (ring_ == nullptr || ring_->nodes().empty()) return;
  for (auto& block : blocks) {
    if (queue_.size() >= kMaxQueuedBlocks) break;
    queue_.push_back(std::move(block));
  }
}

void CachePoolClient::RunPutter() {
  while (true) {
    std::vector<std::pair<uint64_t, std::string>> batch;
    std::shared_ptr<const kvcache::ConsistentHashRing> ring;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(200));
      if (stop_) return;
      while (!queue_.empty() && batch.size() < 64) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      ring = ring_;
    }
    if (batch.empty() || ring == nullptr) continue;
    absl::flat_hash_map<std::string, tessera::internal::v1::PutBlocksRequest> by_server;
    for (auto& [hash, kv] : batch) {
      std::optional<std::string> owner = ring->Owner(hash);
      if (!owner.has_value()) continue;
      auto* block = by_server[*owner].add_blocks();
      block->set_hash(hash);
      block->set_kv(std::move(kv));
    }
    for (auto& [server, request] : by_server) {
      auto stub = tessera::internal::v1::CachePool::NewStub(channels_.Get(server));
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + kPutDeadline);
      tessera::internal::v1::PutBlocksResponse response;
      if (stub->Put(&context, request, &response).ok()) puts_.fetch_add(response.stored());
    }
  }
}

std::vector<std::string> CachePoolClient::GetLeading(const std::vector<uint64_t>& hashes) {
  std::vector<std::string> found;
  std::shared_ptr<const kvcache::ConsistentHashRing> ring;
  {
    absl::MutexLock lock(&mu_);
    ring = ring_;
  }
  if (ring == nullptr || hashes.empty()) return found;
  // One request per owning server, then keep the leading run.
  absl::flat_hash_map<std::string, tessera::internal::v1::GetBlocksRequest> by_server;
  for (uint64_t hash : hashes) {
    std::optional<std::string> owner = ring->Owner(hash);
    if (owner.has_value()) by_server[*owner].add_hashes(hash);
  }
  absl::flat_hash_map<uint64_t, std::string> got;
  for (auto& [server, request] : by_server) {
    auto stub = tessera::internal::v1::CachePool::NewStub(channels_.Get(server));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kGetDeadline);
    tessera::internal::v1::GetBlocksResponse response;
    if (!stub->Get(&context, request, &response).ok()) continue;  // A miss, not an error.
    for (auto& block : *response.mutable_blocks()) got[block.hash()] = std::move(*block.mutable_kv());
  }
  lookups_.fetch_add(static_cast<int64_t>(hashes.size()));
  for (uint64_t hash : hashes) {
    auto it = got.find(hash);
    if (it == got.end()) break;
    found.push_back(std::move(it->second));
  }
  hits_.fetch_add(static_cast<int64_t>(found.size()));
  return found;
}

}  // namespace tessera::engine::server
