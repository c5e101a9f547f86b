// comm::KeyValueStore over the router's Rendezvous service: how the ranks of an
// expert-parallel group, on any hosts, find each other.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_ROUTER_KEY_VALUE_STORE_H_
#define TESSERA_ENGINE_SERVER_ROUTER_KEY_VALUE_STORE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "comm/key_value_store.h"
#include "tessera/internal/v1/rendezvous.grpc.pb.h"

namespace tessera::engine::server {

class RouterKeyValueStore final : public comm::KeyValueStore {
 public:
  explicit RouterKeyValueStore(std::shared_ptr<grpc::Channel> router);

  absl::Status Set(absl::string_view key, absl::string_view value) override;
  absl::StatusOr<std::string> Get(absl::string_view key, absl::Duration timeout) override;

 private:
  std::unique_ptr<tessera::internal::v1::Rendezvous::Stub> stub_;
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_ROUTER_KEY_VALUE_STORE_H_
