// Built only with -DTESSERA_CUDA=ON. Skips (passing, with a warning) when no device is present.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/dequantize_cuda.h"
#include "kernels/dequantize.h"
#include "kernels/fp16.h"

namespace tessera::kernels {
namespace {

TEST_CASE("CUDA: Q4_1 dequantization matches the CPU reference", "[kernels][gpu]") {
  if (!cuda::DeviceAvailable()) {
    WARN("no CUDA device: skipped");
    return;
  }
  std::mt19937 rng(9);
  const int64_t blocks = 1000;
  std::vector<BlockQ4_1> host(blocks);
  for (auto& b : host) {
    b.d = Fp32ToFp16(0.01f * (rng() % 100));
    b.m = Fp32ToFp16(-0.1f * (rng() % 10));
    for (auto& q : b.qs) q = static_cast<uint8_t>(rng());
  }
  std::vector<float> expected(blocks * 32), got(blocks * 32);
  DequantizeRow(TensorType::kQ4_1, reinterpret_cast<const uint8_t*>(host.data()), blocks * 32, expected.data());
  void* d_in = nullptr;
  float* d_out = nullptr;
  REQUIRE(cudaMalloc(&d_in, sizeof(BlockQ4_1) * blocks) == cudaSuccess);
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&d_out), sizeof(float) * blocks * 32) == cudaSuccess);
  REQUIRE(cudaMemcpy(d_in, host.data(), sizeof(BlockQ4_1) * blocks, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cuda::DequantizeQ4_1(d_in, blocks, d_out, nullptr).ok());
  REQUIRE(cudaMemcpy(got.data(), d_out, sizeof(float) * blocks * 32, cudaMemcpyDeviceToHost) == cudaSuccess);
  cudaFree(d_in);
  cudaFree(d_out);
  CHECK(got == expected);
}

}  // namespace
}  // namespace tessera::kernels
