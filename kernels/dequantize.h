// Converts one row of a GGUF tensor of any supported type to fp32: embedding lookups, norm
// weights, and the reference path of the kernel tests. Thread-safe (pure function).
#ifndef TESSERA_KERNELS_DEQUANTIZE_H_
#define TESSERA_KERNELS_DEQUANTIZE_H_

#include <cstdint>

#include "kernels/tensor_type.h"

namespace tessera::kernels {

// Writes `cols` floats from `row`, which holds cols elements of `type` in GGUF's layout.
// Precondition: cols is a multiple of the type's block size.
void DequantizeRow(TensorType type, const uint8_t* row, int64_t cols, float* out);

// Bytes one row of `cols` elements of `type` takes.
int64_t RowBytes(TensorType type, int64_t cols);

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_DEQUANTIZE_H_
