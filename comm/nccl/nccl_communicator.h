// The GPU backend of Communicator: NCCL, built only with -DTESSERA_CUDA=ON. The ranks agree on
// an NCCL unique id through a KeyValueStore (rank 0 makes it), then NCCL connects them over
// NVLink, InfiniBand or TCP as it finds them.
//
// Buffers passed to the collectives are device memory on this rank's device. Each collective
// is enqueued on the communicator's stream and waited for up to the group timeout; NCCL runs
// in non-blocking mode so that a dead peer cannot hang the wait: past the timeout, or on
// NCCL's asynchronous error, the communicator is aborted and broken for good.
// Thread-safety: as Communicator.
#ifndef TESSERA_COMM_NCCL_NCCL_COMMUNICATOR_H_
#define TESSERA_COMM_NCCL_NCCL_COMMUNICATOR_H_

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "comm/communicator.h"
#include "comm/key_value_store.h"

namespace tessera::comm {

struct NcclOptions {
  int device = 0;  // This rank's CUDA device.
  absl::Duration timeout = absl::Seconds(30);
};

// Number of CUDA devices here (0 when there is no driver or no device).
int CudaDeviceCount();

class NcclCommunicator final : public Communicator {
 public:
  // FailedPrecondition when `options.device` does not exist; Unavailable when the group
  // cannot form within the timeout. The group name must be new for each forming of a group.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Connect(KeyValueStore& store,
                                                                   absl::string_view group,
                                                                   int rank, int size,
                                                                   const NcclOptions& options);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status AllToAllV(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                         std::span<std::byte> recv, std::span<const int64_t> recv_counts) override;
  absl::Status AllReduceSum(std::span<int64_t> values) override;
  absl::Status AllReduceSum(std::span<float> values) override;
  absl::Status Barrier() override;

 private:
  NcclCommunicator(ncclComm_t comm, cudaStream_t stream, int* scratch, std::string group, int rank,
                   int size, int device, absl::Duration timeout);
  // Waits for what was enqueued (ncclResult of the enqueueing call in `enqueued`), aborting
  // and breaking the group on error or timeout.
  absl::Status Complete(absl::string_view what, ncclResult_t enqueued);

  ncclComm_t comm_;
  cudaStream_t stream_;
  int* scratch_;  // One device int, for Barrier.
  const std::string group_;
  const int rank_;
  const int size_;
  const int device_;
  const absl::Duration timeout_;
  absl::Status broken_;
};

}  // namespace tessera::comm

#endif  // TESSERA_COMM_NCCL_NCCL_COMMUNICATOR_H_
