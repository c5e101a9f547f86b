// `tessera cache`: a KV cache pool server. Holds blocks in host memory within a byte budget
// (LRU), serves the CachePool gRPC service, and registers with the router, which tells every
// worker the live servers. Blocks are placed by consistent hashing on the workers' side.
// Thread-safety: RunCacheServer is called once per process.
#ifndef TESSERA_ENGINE_SERVER_CACHE_SERVER_H_
#define TESSERA_ENGINE_SERVER_CACHE_SERVER_H_

#include <string>

#include "absl/status/status.h"
#include "kvcache/block_store.h"
#include "tessera/internal/v1/cache.grpc.pb.h"

namespace tessera::engine::server {

class CachePoolService final : public tessera::internal::v1::CachePool::Service {
 public:
  explicit CachePoolService(kvcache::BlockStore& store) : store_(store) {}
  grpc::Status Put(grpc::ServerContext*, const tessera::internal::v1::PutBlocksRequest* request,
                   tessera::internal::v1::PutBlocksResponse* response) override;
  grpc::Status Get(grpc::ServerContext*, const tessera::internal::v1::GetBlocksRequest* request,
                   tessera::internal::v1::GetBlocksResponse* response) override;

 private:
  kvcache::BlockStore& store_;
};

struct CacheServerOptions {
  std::string router_address;
  std::string listen_address = "127.0.0.1:0";
  std::string advertise_host;
  int64_t capacity_bytes = int64_t{1} << 30;
};

absl::Status RunCacheServer(const CacheServerOptions& options);

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_CACHE_SERVER_H_
