#include "engine/server/router_membership.h"

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/server/proto_convert.h"
#include "engine/server/shutdown_signal.h"

namespace tessera::engine::server {

std::string AdvertisedHost(const std::string& listen_address, const std::string& advertise_host) {
  if (!advertise_host.empty()) return advertise_host;
  std::string host = listen_address.substr(0, listen_address.rfind(':'));
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  return host;
}

std::string AdvertisedAddress(const std::string& listen_address, const std::string& advertise_host,
                              int port) {
  return absl::StrCat(AdvertisedHost(listen_address, advertise_host), ":", port);
}

absl::StatusOr<std::string> RegisterOnce(
    tessera::internal::v1::Control::Stub& control,
    tessera::internal::v1::RegisterRequest& registration,
    const std::function<tessera::internal::v1::WorkerLoad()>& load) {
  *registration.mutable_load() = load();
  grpc::ClientContext rpc;
  rpc.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  tessera::internal::v1::RegisterResponse response;
  grpc::Status status = control.Register(&rpc, registration, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.worker_id();
}

absl::StatusOr<std::string> RegisterWithRetry(
    tessera::internal::v1::Control::Stub& control,
    tessera::internal::v1::RegisterRequest& registration,
    const std::function<tessera::internal::v1::WorkerLoad()>& load,
    const std::string& router_address) {
  absl::StatusOr<std::string> id = RegisterOnce(control, registration, load);
  for (int attempt = 0; !id.ok() && attempt < 60 && !ShutdownRequested(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    id = RegisterOnce(control, registration, load);
  }
  if (!id.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot register with the router at ",
                                               router_address, ": ", id.status().message()));
  }
  return id;
}

}  // namespace tessera::engine::server
