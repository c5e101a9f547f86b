#include "engine/server/cache_server.h"

#include <unistd.h>

#include <iostream>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "engine/server/channel_pool.h"
#include "engine/server/proto_convert.h"
#include "engine/server/router_membership.h"
#include "engine/server/shutdown_signal.h"
#include "engine/server/worker_context.h"
#include "tessera/internal/v1/worker.grpc.pb.h"

namespace tessera::engine::server {

grpc::Status CachePoolService::Put(grpc::ServerContext*,
                                   const tessera::internal::v1::PutBlocksRequest* request,
                                   tessera::internal::v1::PutBlocksResponse* response) {
  int32_t stored = 0;
  for (const auto& block : request->blocks()) stored += store_.Put(block.hash(), block.kv());
  response->set_stored(stored);
  return grpc::Status::OK;
}

grpc::Status CachePoolService::Get(grpc::ServerContext*,
                                   const tessera::internal::v1::GetBlocksRequest* request,
                                   tessera::internal::v1::GetBlocksResponse* response) {
  for (uint64_t hash : request->hashes()) {
    std::optional<std::string> kv = store_.Get(hash);
    if (!kv.has_value()) continue;
    auto* block = response->add_blocks();
    block->set_hash(hash);
    block->set_kv(*std::move(kv));
  }
  return grpc::Status::OK;
}

absl::Status RunCacheServer(const CacheServerOptions& options) {
  InstallShutdownSignalHandlers();
  kvcache::BlockStore store(options.capacity_bytes);
  CachePoolService service(store);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen_address, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(kMaxInternalMessageBytes);
  builder.SetMaxSendMessageSize(kMaxInternalMessageBytes);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  const std::string address =
      AdvertisedAddress(options.listen_address, options.advertise_host, port);

  ChannelPool channels;
  auto control = tessera::internal::v1::Control::NewStub(channels.Get(options.router_address));
  tessera::internal::v1::RegisterRequest registration;
  registration.set_role(tessera::internal::v1::ROLE_CACHE);
  registration.set_address(address);
  registration.set_host_id(LocalHostId());
  registration.set_pid(getpid());
  auto load = [&] {
    tessera::internal::v1::WorkerLoad proto;
    auto* kv = proto.mutable_kv_cache();
    kv->set_pool_stored_blocks(store.blocks());
    kv->set_pool_stored_bytes(store.bytes());
    kv->set_pool_capacity_bytes(store.capacity_bytes());
    kv->set_evicted_host(store.evicted());
    return proto;
  };
  absl::StatusOr<std::string> id =
      RegisterWithRetry(*control, registration, load, options.router_address);
  if (!id.ok()) {
    server->Shutdown();
    return id.status();
  }
  std::cerr << "tessera cache " << *id << ": on " << address << ", "
            << options.capacity_bytes << " bytes (pid " << getpid() << ")" << std::endl;
  while (!ShutdownRequested()) {
    tessera::internal::v1::HeartbeatRequest beat;
    beat.set_worker_id(*id);
    *beat.mutable_load() = load();
    grpc::ClientContext rpc;
    rpc.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    tessera::internal::v1::HeartbeatResponse response;
    if (control->Heartbeat(&rpc, beat, &response).ok() && !response.known()) {
      if (absl::StatusOr<std::string> again = RegisterOnce(*control, registration, load);
          again.ok()) {
        id = again;
      }
    }
    if (response.drain()) break;
    for (int i = 0; i < 25 && !ShutdownRequested(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  tessera::internal::v1::DeregisterRequest request;
  request.set_worker_id(*id);
  grpc::ClientContext rpc;
  rpc.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  tessera::internal::v1::DeregisterResponse response;
  control->Deregister(&rpc, request, &response);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return absl::OkStatus();
}

}  // namespace tessera::engine::server
