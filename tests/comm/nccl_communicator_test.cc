// The NCCL backend, one rank per CUDA device (threads in this process). Tagged [gpu]: without
// a device every case is skipped with a warning.
#include "comm/nccl/nccl_communicator.h"

#include <cuda_runtime_api.h>

#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "comm/local_key_value_store.h"

namespace tessera::comm {
namespace {

TEST_CASE("NcclCommunicator: all-to-all and all-reduce across the devices", "[comm][gpu]") {
  const int devices = CudaDeviceCount();
  if (devices == 0) {
    WARN("no CUDA device: skipped");
    return;
  }
  const int size = std::min(devices, 4);
  LocalKeyValueStore store;
  std::vector<absl::Status> results(size);
  std::vector<std::vector<uint8_t>> received(size);
  std::vector<int64_t> sums(size);
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < size; ++rank) {
    ranks.emplace_back([&, rank] {
      absl::StatusOr<std::unique_ptr<NcclCommunicator>> c =
          NcclCommunicator::Connect(store, "nccl-test", rank, size, NcclOptions{.device = rank});
      if (!c.ok()) {
        results[rank] = c.status();
        return;
      }
      // Rank r sends r + 1 bytes of value r * 16 + peer to every peer.
      std::vector<uint8_t> host_send;
      std::vector<int64_t> send_counts(size), recv_counts(size);
      for (int peer = 0; peer < size; ++peer) {
        send_counts[peer] = rank + 1;
        recv_counts[peer] = peer + 1;
        host_send.insert(host_send.end(), rank + 1, static_cast<uint8_t>(rank * 16 + peer));
      }
      size_t recv_bytes = 0;
      for (int64_t n : recv_counts) recv_bytes += static_cast<size_t>(n);
      std::byte* send = nullptr;
      std::byte* recv = nullptr;
      int64_t* value = nullptr;
      cudaMalloc(&send, host_send.size());
      cudaMalloc(&recv, recv_bytes);
      cudaMalloc(&value, sizeof(int64_t));
      cudaMemcpy(send, host_send.data(), host_send.size(), cudaMemcpyHostToDevice);
      const int64_t mine = rank + 1;
      cudaMemcpy(value, &mine, sizeof(mine), cudaMemcpyHostToDevice);
      results[rank] =
          (*c)->AllToAllV({send, host_send.size()}, send_counts, {recv, recv_bytes}, recv_counts);
      if (results[rank].ok()) results[rank] = (*c)->AllReduceSum(std::span<int64_t>(value, 1));
      if (results[rank].ok()) results[rank] = (*c)->Barrier();
      received[rank].resize(recv_bytes);
      cudaMemcpy(received[rank].data(), recv, recv_bytes, cudaMemcpyDeviceToHost);
      cudaMemcpy(&sums[rank], value, sizeof(int64_t), cudaMemcpyDeviceToHost);
      cudaFree(send);
      cudaFree(recv);
      cudaFree(value);
    });
  }
  for (std::thread& t : ranks) t.join();
  for (int rank = 0; rank < size; ++rank) {
    INFO(results[rank].ToString());
    REQUIRE(results[rank].ok());
    size_t offset = 0;
    for (int from = 0; from < size; ++from) {
      for (int i = 0; i <= from; ++i) {
        CHECK(received[rank][offset++] == static_cast<uint8_t>(from * 16 + rank));
      }
    }
    CHECK(sums[rank] == size * (size + 1) / 2);
  }
}

TEST_CASE("NcclCommunicator: a device that does not exist is refused clearly", "[comm][gpu]") {
  LocalKeyValueStore store;
  absl::Status status =
      NcclCommunicator::Connect(store, "g", 0, 1, NcclOptions{.device = CudaDeviceCount()})
          .status();
  CHECK(status.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(std::string(status.message()).find("does not exist") != std::string::npos);
}

}  // namespace
}  // namespace tessera::comm
