// CUDA kernels, built only with -DTESSERA_CUDA=ON. Host launch functions take the stream
// explicitly; nothing here synchronizes. Thread-safety: as CUDA streams.
#ifndef TESSERA_KERNELS_CUDA_DEQUANTIZE_CUDA_H_
#define TESSERA_KERNELS_CUDA_DEQUANTIZE_CUDA_H_

#include <cstdint>

#include "absl/status/status.h"

typedef struct CUstream_st* cudaStream_t;

namespace tessera::kernels::cuda {

// Whether a CUDA device is usable in this process.
bool DeviceAvailable();

// Dequantizes `blocks` Q4_1 blocks (GGUF layout, device memory) into blocks * 32 floats
// (device memory) on `stream`.
absl::Status DequantizeQ4_1(const void* device_blocks, int64_t blocks, float* device_out,
                            cudaStream_t stream);

}  // namespace tessera::kernels::cuda

#endif  // TESSERA_KERNELS_CUDA_DEQUANTIZE_CUDA_H_
