// Collective communication among the ranks of one group (e.g. an expert-parallel group: R
// processes, each holding E/R of a model's experts). Backends: Gloo (TCP, CPU) and NCCL (GPU,
// built only with CUDA on).
//
// Every collective is blocking and bounded: it returns once this rank's part is done, or an
// error when a peer died or the group's timeout passed. After an error the communicator is
// broken (the peers disagree on what was exchanged) and every later call fails at once;
// the group must be formed again.
// Thread-safety: one collective at a time per communicator.
#ifndef TESSERA_COMM_COMMUNICATOR_H_
#define TESSERA_COMM_COMMUNICATOR_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"

namespace tessera::comm {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // All-to-all with per-peer sizes, in bytes. This rank sends send_counts[j] bytes to rank j,
  // taken from `send` in rank order, and receives recv_counts[j] bytes from rank j into `recv`
  // in rank order (the part for itself is copied). Both count vectors have size() entries and
  // must sum to the buffers' sizes; the peers' counts must agree pairwise (what j sends to
  // this rank is what this rank expects from j).
  virtual absl::Status AllToAllV(std::span<const std::byte> send,
                                 std::span<const int64_t> send_counts, std::span<std::byte> recv,
                                 std::span<const int64_t> recv_counts) = 0;

  // Element-wise sum over all ranks, in place.
  virtual absl::Status AllReduceSum(std::span<int64_t> values) = 0;
  virtual absl::Status AllReduceSum(std::span<float> values) = 0;

  // Returns once every rank has called it.
  virtual absl::Status Barrier() = 0;
};

// Checks AllToAllV's arguments against the group size: counts are non-negative, one per rank,
// and sum to the buffer sizes. InvalidArgument naming the argument otherwise.
absl::Status ValidateAllToAllV(int group_size, size_t send_bytes,
                               std::span<const int64_t> send_counts, size_t recv_bytes,
                               std::span<const int64_t> recv_counts);

}  // namespace tessera::comm

#endif  // TESSERA_COMM_COMMUNICATOR_H_
