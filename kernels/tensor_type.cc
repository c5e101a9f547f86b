#include "kernels/tensor_type.h"

#include "common/check.h"

namespace tessera::kernels {
namespace {

constexpr TensorTypeInfo kTypes[] = {
    {TensorType::kF32, "F32", 1, 4},
    {TensorType::kF16, "F16", 1, 2},
    {TensorType::kQ4_0, "Q4_0", kQuantBlock, sizeof(BlockQ4_0)},
    {TensorType::kQ4_1, "Q4_1", kQuantBlock, sizeof(BlockQ4_1)},
    {TensorType::kQ8_0, "Q8_0", kQuantBlock, sizeof(BlockQ8_0)},
    {TensorType::kBF16, "BF16", 1, 2},
};

}  // namespace

std::optional<TensorTypeInfo> FindTensorType(uint32_t raw_type) {
  for (const TensorTypeInfo& info : kTypes) {
    if (static_cast<uint32_t>(info.type) == raw_type) return info;
  }
  return std::nullopt;
}

TensorTypeInfo GetTensorTypeInfo(TensorType type) {
  std::optional<TensorTypeInfo> info = FindTensorType(static_cast<uint32_t>(type));
  TESSERA_CHECK(info.has_value());
  return *info;
}

}  // namespace tessera::kernels
