#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/dequantize_cuda.h"

namespace tessera::kernels::cuda {
namespace {

struct BlockQ4_1 {
  __half d;
  __half m;
  uint8_t qs[16];
};

// One thread per output element pair (low and high nibble of one byte).
__global__ void DequantizeQ4_1Kernel(const BlockQ4_1* blocks, int64_t n_blocks, float* out) {
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_blocks * 16) return;
  int64_t b = i / 16;
  int j = static_cast<int>(i % 16);
  float d = __half2float(blocks[b].d), m = __half2float(blocks[b].m);
  uint8_t q = blocks[b].qs[j];
  out[b * 32 + j] = d * static_cast<float>(q & 0x0f) + m;
  out[b * 32 + j + 16] = d * static_cast<float>(q >> 4) + m;
}

}  // namespace

bool DeviceAvailable() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

absl::Status DequantizeQ4_1(const void* device_blocks, int64_t blocks, float* device_out,
                            cudaStream_t stream) {
  if (blocks <= 0) return absl::OkStatus();
  constexpr int kThreads = 256;
  int64_t grid = (blocks * 16 + kThreads - 1) / kThreads;
  DequantizeQ4_1Kernel<<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(
      static_cast<const BlockQ4_1*>(device_blocks), blocks, device_out);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    return absl::InternalError(absl::StrCat("Q4_1 dequantize launch failed: ", cudaGetErrorString(err)));
  }
  return absl::OkStatus();
}

}  // namespace tessera::kernels::cuda
