// What every process that joins a deployment (worker, cache server) does with the router:
// work out the address others reach it at, and register, retrying while the router starts.
// Thread-safety: stateless functions.
#ifndef TESSERA_ENGINE_SERVER_ROUTER_MEMBERSHIP_H_
#define TESSERA_ENGINE_SERVER_ROUTER_MEMBERSHIP_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "tessera/internal/v1/worker.grpc.pb.h"

namespace tessera::engine::server {

// The host others reach this process at: `advertise_host` if set, else the listen address's
// host (127.0.0.1 for a wildcard listen).
std::string AdvertisedHost(const std::string& listen_address, const std::string& advertise_host);

// AdvertisedHost:port.
std::string AdvertisedAddress(const std::string& listen_address, const std::string& advertise_host,
                              int port);

// Registers once with the current `load()`; the worker id, or the router's error.
absl::StatusOr<std::string> RegisterOnce(
    tessera::internal::v1::Control::Stub& control,
    tessera::internal::v1::RegisterRequest& registration,
    const std::function<tessera::internal::v1::WorkerLoad()>& load);

// RegisterOnce, retried for up to ~15 s (the router may still be starting) unless shutdown is
// requested. Unavailable naming `router_address` if it never succeeds.
absl::StatusOr<std::string> RegisterWithRetry(
    tessera::internal::v1::Control::Stub& control,
    tessera::internal::v1::RegisterRequest& registration,
    const std::function<tessera::internal::v1::WorkerLoad()>& load,
    const std::string& router_address);

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_ROUTER_MEMBERSHIP_H_
