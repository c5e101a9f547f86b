// One gRPC channel per peer address, created on first use and shared by every call to that
// peer (a channel multiplexes calls over one HTTP/2 connection; making one per request would
// pay a TCP handshake each time).
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_CHANNEL_POOL_H_
#define TESSERA_ENGINE_SERVER_CHANNEL_POOL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace tessera::engine::server {

// Largest message between Tessera processes (a KV chunk of a long prompt's layer).
inline constexpr int kMaxInternalMessageBytes = 256 << 20;

// HTTP/2 bandwidth probing (BDP pings) grows a connection's flow-control window to carry bulk
// data fast, at the cost of a PING, its ACK and window updates, each a socket write, every
// few messages. Channels that carry only small messages (requests, token events) turn it off.
enum class ChannelTraffic { kBulk, kSmallMessages };

// Sets `traffic`'s transport options on a server or channel.
inline void ApplyChannelTraffic(ChannelTraffic traffic, grpc::ChannelArguments& args) {
  if (traffic == ChannelTraffic::kSmallMessages) args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
}
inline void ApplyChannelTraffic(ChannelTraffic traffic, grpc::ServerBuilder& builder) {
  if (traffic == ChannelTraffic::kSmallMessages) {
    builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  }
}

class ChannelPool {
 public:
  explicit ChannelPool(ChannelTraffic traffic = ChannelTraffic::kBulk) : traffic_(traffic) {}

  std::shared_ptr<grpc::Channel> Get(const std::string& address) {
    absl::MutexLock lock(&mu_);
    auto& channel = channels_[address];
    if (channel == nullptr) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(kMaxInternalMessageBytes);
      args.SetMaxSendMessageSize(kMaxInternalMessageBytes);
      // Reconnect quickly after a peer restarts instead of backing off for up to 2 minutes.
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
      ApplyChannelTraffic(traffic_, args);
      channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    }
    return channel;
  }

 private:
  const ChannelTraffic traffic_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_CHANNEL_POOL_H_
