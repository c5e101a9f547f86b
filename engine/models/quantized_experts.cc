#include "engine/models/quantized_experts.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/dequantize.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quantized_activations.h"

namespace tessera::engine {
namespace {

// Per thread, shared by every layer's block (a thread runs one at a time).
struct Scratch {
  std::vector<float> gate_up, activated;
  kernels::QuantizedActivations quantized;
};
thread_local Scratch scratch;

absl::Status Packed(const GgufTensor& tensor, std::span<const uint8_t> data, int64_t rows,
                    int64_t cols, kernels::PackedMatrix& out) {
  const kernels::WeightSource source{tensor.type, data, rows};
  absl::StatusOr<kernels::PackedMatrix> packed =
      kernels::PackedMatrix::Pack(std::span<const kernels::WeightSource>(&source, 1), cols);
  if (!packed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", tensor.name, "': ", packed.status().message()));
  }
  out = *std::move(packed);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<QuantizedExpert>> SplitDenseFfn(const GgufTensor& gate,
                                                           const GgufTensor& up,
                                                           const GgufTensor& down,
                                                           int32_t num_experts, int32_t first,
                                                           int32_t count) {
  if (gate.shape.size() != 2 || up.shape != gate.shape || down.shape.size() != 2 ||
      down.shape[0] != gate.shape[1] || down.shape[1] != gate.shape[0]) {
    return absl::InvalidArgumentError(absl::StrCat("tensors '", gate.name, "', '", up.name,
                                                   "' and '", down.name,
                                                   "' do not form a SwiGLU feed-forward block"));
  }
  const int64_t hidden = gate.shape[0];
  const int64_t inter = gate.shape[1];
  if (num_experts < 1 || inter % num_experts != 0 ||
      (inter / num_experts) % kernels::kQuantBlock != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", gate.name, "': intermediate size ", inter, " does not split into ",
                     num_experts, " experts of whole ", kernels::kQuantBlock, "-element blocks"));
  }
  if (first < 0 || count < 0 || first + count > num_experts) {
    return absl::InvalidArgumentError(
        absl::StrCat("experts [", first, ", ", first + count, ") are not among ", num_experts));
  }
  const int64_t slice = inter / num_experts;
  const int64_t gate_row = kernels::RowBytes(gate.type, hidden);
  const int64_t up_row = kernels::RowBytes(up.type, hidden);
  const int64_t down_row = kernels::RowBytes(down.type, inter);
  const int64_t down_slice = kernels::RowBytes(down.type, slice);
  std::vector<QuantizedExpert> experts(static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) {
    const int64_t e = first + i;
    const std::span<const uint8_t> gate_rows =
        gate.data.subspan(e * slice * gate_row, slice * gate_row);
    const std::span<const uint8_t> up_rows = up.data.subspan(e * slice * up_row, slice * up_row);
    const kernels::WeightSource sources[] = {{gate.type, gate_rows, slice},
                                             {up.type, up_rows, slice}};
    absl::StatusOr<kernels::PackedMatrix> gate_up = kernels::PackedMatrix::Pack(sources, hidden);
    if (!gate_up.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", gate.name, "': ", gate_up.status().message()));
    }
    experts[i].gate_up = *std::move(gate_up);
    // The down projection's columns [e * slice, (e + 1) * slice): whole blocks of each row.
    std::vector<uint8_t> columns(static_cast<size_t>(hidden * down_slice));
    for (int64_t r = 0; r < hidden; ++r) {
      std::memcpy(columns.data() + r * down_slice, down.data.data() + r * down_row + e * down_slice,
                  static_cast<size_t>(down_slice));
    }
    TESSERA_RETURN_IF_ERROR(Packed(down, columns, hidden, slice, experts[i].down));
  }
  return experts;
}

QuantizedExperts::QuantizedExperts(int32_t hidden, int32_t intermediate,
                                   std::vector<QuantizedExpert> experts)
    : hidden_(hidden), intermediate_(intermediate), experts_(std::move(experts)) {}

void QuantizedExperts::Forward(const float* x, int64_t tokens, const int32_t* ids,
                               const float* weights, int32_t top_k, float* out,
                               kernels::ThreadPool& pool) {
  const int64_t inter = intermediate_;
  ForEachExpertGroup(x, tokens, ids, weights, top_k, num_experts(), hidden_, out,
                     [&](int32_t e, const float* rows, int64_t n, float* results) {
                       scratch.quantized.set_keep_bf16(experts_[e].gate_up.format() ==
                                                       kernels::PackedFormat::kBf16);
                       scratch.quantized.Quantize(rows, n, hidden_, hidden_);
                       scratch.gate_up.resize(static_cast<size_t>(n * 2 * inter));
                       kernels::Matmul(experts_[e].gate_up, scratch.quantized,
                                       scratch.gate_up.data(), 2 * inter, pool);
                       scratch.activated.resize(static_cast<size_t>(n * inter));
                       kernels::SiluMulRows(scratch.gate_up.data(), n, inter,
                                            scratch.activated.data());
                       scratch.quantized.Quantize(scratch.activated.data(), n, inter, inter);
                       kernels::Matmul(experts_[e].down, scratch.quantized, results, hidden_, pool);
                     });
}

}  // namespace tessera::engine
