// A tessera.v1.Inference server that answers at once: Generate streams max_tokens tokens (one
// per message) without computing anything, optionally holding each stream open for a while
// before its last message. It measures the replayer itself: how many requests per second it
// can issue and how many streams it can keep open, with no model in the way.
// Thread-safety: thread-safe.
#ifndef TESSERA_BENCH_INSTANT_SERVER_H_
#define TESSERA_BENCH_INSTANT_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tessera::bench {

class InstantServer {
 public:
  // Listens on `address` ("127.0.0.1:0" for any port).
  static absl::StatusOr<std::unique_ptr<InstantServer>> Start(const std::string& address,
                                                              std::chrono::milliseconds hold);
  ~InstantServer();

  int port() const { return port_; }
  int64_t open_streams() const { return open_.load(); }
  int64_t most_open_streams() const { return most_open_.load(); }
  int64_t requests() const { return requests_.load(); }

 private:
  class Service;
  InstantServer() = default;

  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::atomic<int64_t> open_{0}, most_open_{0}, requests_{0};
};

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_INSTANT_SERVER_H_
