// Element types of weight tensors and the layouts of their quantized blocks. The numbering is
// GGUF's (ggml's), so a type read from a file maps straight onto it. Thread-safe (constants).
#ifndef TESSERA_KERNELS_TENSOR_TYPE_H_
#define TESSERA_KERNELS_TENSOR_TYPE_H_

#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace tessera::kernels {

enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 8,
  kBF16 = 30,
};

struct TensorTypeInfo {
  TensorType type;
  absl::string_view name;
  int64_t block_elements;  // Elements that share one block (1 for plain floats).
  int64_t block_bytes;     // Bytes of one block.
};

// Describes a raw GGUF type id, or nullopt when Tessera does not support it.
std::optional<TensorTypeInfo> FindTensorType(uint32_t raw_type);
TensorTypeInfo GetTensorTypeInfo(TensorType type);

inline constexpr int kQuantBlock = 32;  // Elements per Q4_0, Q4_1 and Q8_0 block.

// Q4_0: x = d * (q - 8); element j in the low nibble of qs[j], element j + 16 in the high.
struct BlockQ4_0 {
  uint16_t d;  // fp16
  uint8_t qs[kQuantBlock / 2];
};
// Q4_1: x = d * q + m, nibbles as in Q4_0.
struct BlockQ4_1 {
  uint16_t d;  // fp16
  uint16_t m;  // fp16
  uint8_t qs[kQuantBlock / 2];
};
// Q8_0: x = d * q.
struct BlockQ8_0 {
  uint16_t d;  // fp16
  int8_t qs[kQuantBlock];
};
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ8_0) == 34);

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_TENSOR_TYPE_H_
