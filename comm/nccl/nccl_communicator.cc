#include "comm/nccl/nccl_communicator.h"

#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

namespace tessera::comm {
namespace {

// Polls a non-blocking communicator until its pending work leaves ncclInProgress.
ncclResult_t AwaitNccl(ncclComm_t comm, absl::Time deadline) {
  ncclResult_t state = ncclInProgress;
  while (true) {
    if (ncclCommGetAsyncError(comm, &state) != ncclSuccess) return ncclSystemError;
    if (state != ncclInProgress) return state;
    if (absl::Now() > deadline) return ncclInProgress;
    std::this_thread::yield();
  }
}

}  // namespace

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Connect(
    KeyValueStore& store, absl::string_view group, int rank, int size, const NcclOptions& options) {
  if (size < 1 || rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " of ", size, " is not a rank"));
  }
  if (options.device < 0 || options.device >= CudaDeviceCount()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA device ", options.device, " does not exist here (", CudaDeviceCount(), " devices)"));
  }
  if (cudaSetDevice(options.device) != cudaSuccess) {
    return absl::FailedPreconditionError(absl::StrCat("cannot use CUDA device ", options.device));
  }
  const std::string id_key = absl::StrCat(group, "/nccl-unique-id");
  ncclUniqueId id;
  if (rank == 0) {
    if (ncclGetUniqueId(&id) != ncclSuccess) {
      return absl::UnavailableError("ncclGetUniqueId failed");
    }
    if (absl::Status s = store.Set(id_key, absl::string_view(id.internal, sizeof(id.internal)));
        !s.ok()) {
      return s;
    }
  } else {
    absl::StatusOr<std::string> value = store.Get(id_key, options.timeout);
    if (!value.ok()) return value.status();
    if (value->size() != sizeof(id.internal)) {
      return absl::DataLossError(
          absl::StrCat(id_key, " holds ", value->size(), " bytes, not ", sizeof(id.internal)));
    }
    std::memcpy(id.internal, value->data(), sizeof(id.internal));
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // So that a missing peer times out instead of hanging.
  ncclComm_t comm = nullptr;
  ncclResult_t started = ncclCommInitRankConfig(&comm, size, id, rank, &config);
  const ncclResult_t joined = (started == ncclSuccess || started == ncclInProgress)
                                  ? AwaitNccl(comm, absl::Now() + options.timeout)
                                  : started;
  if (joined != ncclSuccess) {
    if (comm != nullptr) ncclCommAbort(comm);
    return absl::UnavailableError(
        absl::StrCat("rank ", rank, " of ", size, " could not join NCCL group ", group, ": ",
                     joined == ncclInProgress ? "timed out" : ncclGetErrorString(joined)));
  }
  cudaStream_t stream = nullptr;
  int* scratch = nullptr;
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess ||
      cudaMalloc(&scratch, sizeof(int)) != cudaSuccess) {
    if (stream != nullptr) cudaStreamDestroy(stream);
    ncclCommAbort(comm);
    return absl::ResourceExhaustedError("cannot create the communicator's stream or scratch");
  }
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(
      comm, stream, scratch, std::string(group), rank, size, options.device, options.timeout));
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, cudaStream_t stream, int* scratch,
                                   std::string group, int rank, int size, int device,
                                   absl::Duration timeout)
    : comm_(comm),
      stream_(stream),
      scratch_(scratch),
      group_(std::move(group)),
      rank_(rank),
      size_(size),
      device_(device),
      timeout_(timeout) {}

NcclCommunicator::~NcclCommunicator() {
  cudaSetDevice(device_);
  if (broken_.ok()) {
    ncclCommFinalize(comm_);
    AwaitNccl(comm_, absl::Now() + timeout_);
    ncclCommDestroy(comm_);
  } else {
    ncclCommAbort(comm_);
  }
  cudaFree(scratch_);
  cudaStreamDestroy(stream_);
}

absl::Status NcclCommunicator::Complete(absl::string_view what, ncclResult_t enqueued) {
  const absl::Time deadline = absl::Now() + timeout_;
  ncclResult_t result = enqueued;
  if (result == ncclSuccess || result == ncclInProgress) result = AwaitNccl(comm_, deadline);
  while (result == ncclSuccess) {
    const cudaError_t done = cudaStreamQuery(stream_);
    if (done == cudaSuccess) return absl::OkStatus();
    if (done != cudaErrorNotReady) {
      result = ncclUnhandledCudaError;
      break;
    }
    if (absl::Now() > deadline) {
      result = ncclInProgress;
      break;
    }
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async);
    if (async != ncclSuccess && async != ncclInProgress) result = async;
    std::this_thread::yield();
  }
  ncclCommAbort(comm_);
  broken_ = absl::UnavailableError(absl::StrCat(
      what, " failed on rank ", rank_, " of ", size_, " in NCCL group ", group_, ": ",
      result == ncclInProgress ? absl::StrCat("not done within ", absl::FormatDuration(timeout_))
                               : std::string(ncclGetErrorString(result))));
  return broken_;
}

absl::Status NcclCommunicator::AllToAllV(std::span<const std::byte> send,
                                         std::span<const int64_t> send_counts,
                                         std::span<std::byte> recv,
                                         std::span<const int64_t> recv_counts) {
  if (!broken_.ok()) return broken_;
  if (absl::Status s = ValidateAllToAllV(size_, send.size(), send_counts, recv.size(), recv_counts);
      !s.ok()) {
    return s;
  }
  cudaSetDevice(device_);
  ncclResult_t result = ncclGroupStart();
  size_t send_offset = 0;
  size_t recv_offset = 0;
  for (int peer = 0; peer < size_ && result == ncclSuccess; ++peer) {
    const size_t out = static_cast<size_t>(send_counts[peer]);
    const size_t in = static_cast<size_t>(recv_counts[peer]);
    if (out > 0) result = ncclSend(send.data() + send_offset, out, ncclUint8, peer, comm_, stream_);
    if (in > 0 && (result == ncclSuccess || result == ncclInProgress)) {
      result = ncclRecv(recv.data() + recv_offset, in, ncclUint8, peer, comm_, stream_);
    }
    if (result == ncclInProgress) result = ncclSuccess;
    send_offset += out;
    recv_offset += in;
  }
  const ncclResult_t ended = ncclGroupEnd();
  return Complete("all-to-all", result != ncclSuccess ? result : ended);
}

absl::Status NcclCommunicator::AllReduceSum(std::span<int64_t> values) {
  if (!broken_.ok()) return broken_;
  cudaSetDevice(device_);
  return Complete("all-reduce", ncclAllReduce(values.data(), values.data(), values.size(),
                                              ncclInt64, ncclSum, comm_, stream_));
}

absl::Status NcclCommunicator::AllReduceSum(std::span<float> values) {
  if (!broken_.ok()) return broken_;
  cudaSetDevice(device_);
  return Complete("all-reduce", ncclAllReduce(values.data(), values.data(), values.size(),
                                              ncclFloat32, ncclSum, comm_, stream_));
}

absl::Status NcclCommunicator::Barrier() {
  if (!broken_.ok()) return broken_;
  cudaSetDevice(device_);
  return Complete("barrier",
                  ncclAllReduce(scratch_, scratch_, 1, ncclInt32, ncclSum, comm_, stream_));
}

}  // namespace tessera::comm
