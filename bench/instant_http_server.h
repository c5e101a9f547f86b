// The HTTP counterpart of InstantServer: an OpenAI-compatible server that answers at once.
// POST /v1/completions with "stream": true gets max_tokens server-sent events of one token
// each (optionally holding the stream open before the last), then the usage and [DONE]; with
// "stream": false, one JSON body. GET /v1/models lists one model. It measures the replayer's
// HTTP path with no model in the way.
//
// One libevent loop on one thread serves every connection: 10,000 held streams (each its own
// HTTP/1.1 connection) need no thread each.
// Thread-safety: the accessors may be called from any thread.
#ifndef TESSERA_BENCH_INSTANT_HTTP_SERVER_H_
#define TESSERA_BENCH_INSTANT_HTTP_SERVER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tessera::bench {

class InstantHttpServer {
 public:
  // Listens on `address`, "HOST:PORT" with an IPv4 host ("127.0.0.1:0" for any port).
  static absl::StatusOr<std::unique_ptr<InstantHttpServer>> Start(const std::string& address,
                                                                  std::chrono::milliseconds hold);
  ~InstantHttpServer();
  InstantHttpServer(const InstantHttpServer&) = delete;
  InstantHttpServer& operator=(const InstantHttpServer&) = delete;

  int port() const { return port_; }
  int64_t open_streams() const { return open_.load(); }
  int64_t most_open_streams() const { return most_open_.load(); }
  int64_t requests() const { return requests_.load(); }

 private:
  class Loop;
  InstantHttpServer() = default;

  std::unique_ptr<Loop> loop_;
  int port_ = 0;
  std::atomic<int64_t> open_{0}, most_open_{0}, requests_{0};
};

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_INSTANT_HTTP_SERVER_H_
