#include "engine/server/router_key_value_store.h"

#include "absl/strings/str_cat.h"
#include "engine/server/proto_convert.h"

namespace tessera::engine::server {

RouterKeyValueStore::RouterKeyValueStore(std::shared_ptr<grpc::Channel> router)
    : stub_(tessera::internal::v1::Rendezvous::NewStub(std::move(router))) {}

absl::Status RouterKeyValueStore::Set(absl::string_view key, absl::string_view value) {
  tessera::internal::v1::SetKeyRequest request;
  request.set_key(std::string(key));
  request.set_value(std::string(value));
  tessera::internal::v1::SetKeyResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  // As Get: a router still starting (workers and router start together) is waited for.
  context.set_wait_for_ready(true);
  absl::Status status = FromGrpcStatus(stub_->Set(&context, request, &response));
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat("rendezvous: setting ", key, ": ", status.message()));
}

absl::StatusOr<std::string> RouterKeyValueStore::Get(absl::string_view key,
                                                     absl::Duration timeout) {
  tessera::internal::v1::GetKeyRequest request;
  request.set_key(std::string(key));
  tessera::internal::v1::GetKeyResponse response;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  // Waits through the router's restart or a moment of unreachability instead of failing
  // the rendezvous at once.
  context.set_wait_for_ready(true);
  absl::Status status = FromGrpcStatus(stub_->Get(&context, request, &response));
  if (status.ok()) return std::move(*response.mutable_value());
  return absl::Status(status.code(),
                      absl::StrCat("rendezvous: key ", key, " not available within ",
                                   absl::FormatDuration(timeout), ": ", status.message()));
}

}  // namespace tessera::engine::server
