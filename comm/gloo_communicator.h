// The CPU backend of Communicator: Gloo over TCP. Ranks meet through a KeyValueStore, then
// every pair holds a TCP connection for the life of the group. Joining makes the process ignore
// SIGPIPE (unless it handles it): Gloo's writes to a dead peer would otherwise kill it.
// Thread-safety: as Communicator.
#ifndef TESSERA_COMM_GLOO_COMMUNICATOR_H_
#define TESSERA_COMM_GLOO_COMMUNICATOR_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "comm/communicator.h"
#include "comm/key_value_store.h"

namespace gloo {
class Context;
}

namespace tessera::comm {

struct GlooOptions {
  // The address the other ranks reach this one at.
  std::string hostname = "127.0.0.1";
  // Bound on forming the group and on every collective. A rank that dies or stops taking part
  // makes its peers' collectives fail within this (at once, when its connections drop).
  absl::Duration timeout = absl::Seconds(30);
};

class GlooCommunicator final : public Communicator {
 public:
  // Joins `group` as `rank` of `size`: publishes this rank's address in `store` under the
  // group's name and connects to every other rank. The name must be new for each forming of a
  // group (e.g. carry an incarnation id): keys left by an earlier group would mislead it.
  static absl::StatusOr<std::unique_ptr<GlooCommunicator>> Connect(KeyValueStore& store,
                                                                   absl::string_view group,
                                                                   int rank, int size,
                                                                   const GlooOptions& options);
  ~GlooCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status AllToAllV(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                         std::span<std::byte> recv, std::span<const int64_t> recv_counts) override;
  absl::Status AllReduceSum(std::span<int64_t> values) override;
  absl::Status AllReduceSum(std::span<float> values) override;
  absl::Status Barrier() override;

 private:
  GlooCommunicator(std::shared_ptr<gloo::Context> context, std::string group, int rank, int size,
                   absl::Duration timeout);
  // Runs one collective, turning Gloo's exceptions into a status and breaking the group.
  template <typename Body>
  absl::Status Run(absl::string_view what, Body body);

  std::shared_ptr<gloo::Context> context_;
  const std::string group_;
  const int rank_;
  const int size_;
  const absl::Duration timeout_;
  uint32_t next_tag_ = 1;
  absl::Status broken_;  // OK until a collective fails.
};

}  // namespace tessera::comm

#endif  // TESSERA_COMM_GLOO_COMMUNICATOR_H_
