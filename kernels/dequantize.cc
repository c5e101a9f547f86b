#include "kernels/dequantize.h"

#include <cstring>

#include "common/check.h"
#include "kernels/fp16.h"

namespace tessera::kernels {

int64_t RowBytes(TensorType type, int64_t cols) {
  TensorTypeInfo info = GetTensorTypeInfo(type);
  return cols / info.block_elements * info.block_bytes;
}

void DequantizeRow(TensorType type, const uint8_t* row, int64_t cols, float* out) {
  switch (type) {
    case TensorType::kF32:
      std::memcpy(out, row, cols * sizeof(float));
      return;
    case TensorType::kF16:
    case TensorType::kBF16:
      for (int64_t i = 0; i < cols; ++i) {
        uint16_t h;
        std::memcpy(&h, row + 2 * i, 2);
        out[i] = type == TensorType::kF16 ? Fp16ToFp32(h) : Bf16ToFp32(h);
      }
      return;
    case TensorType::kQ4_0:
      for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
        BlockQ4_0 blk;
        std::memcpy(&blk, row + b * sizeof(blk), sizeof(blk));
        float d = Fp16ToFp32(blk.d);
        for (int j = 0; j < 16; ++j) {
          out[b * 32 + j] = d * static_cast<float>((blk.qs[j] & 0x0f) - 8);
          out[b * 32 + j + 16] = d * static_cast<float>((blk.qs[j] >> 4) - 8);
        }
      }
      return;
    case TensorType::kQ4_1:
      for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
        BlockQ4_1 blk;
        std::memcpy(&blk, row + b * sizeof(blk), sizeof(blk));
        float d = Fp16ToFp32(blk.d), m = Fp16ToFp32(blk.m);
        for (int j = 0; j < 16; ++j) {
          out[b * 32 + j] = d * static_cast<float>(blk.qs[j] & 0x0f) + m;
          out[b * 32 + j + 16] = d * static_cast<float>(blk.qs[j] >> 4) + m;
        }
      }
      return;
    case TensorType::kQ8_0:
      for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
        BlockQ8_0 blk;
        std::memcpy(&blk, row + b * sizeof(blk), sizeof(blk));
        float d = Fp16ToFp32(blk.d);
        for (int j = 0; j < 32; ++j) out[b * 32 + j] = d * static_cast<float>(blk.qs[j]);
      }
      return;
  }
  TESSERA_CHECK(false);
}

}  // namespace tessera::kernels
