// Experts with packed quantized weights, computed like the dense GGUF models' feed-forward
// block (activations quantized to 8 bits, integer dot products). Built by splitting a dense
// SwiGLU FFN into E experts of intermediate / E each: expert e takes rows [e*I/E, (e+1)*I/E)
// of the gate and up projections and the same columns of the down projection. Selecting all E
// with weight 1 then computes the dense FFN, up to the order of the down projection's sums,
// which is what lets a dense model check expert-parallel dispatch and combine with real
// weights and real text.
// Thread-safety: as ExpertBlock.
#ifndef TESSERA_ENGINE_MODELS_QUANTIZED_EXPERTS_H_
#define TESSERA_ENGINE_MODELS_QUANTIZED_EXPERTS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/gguf/gguf_file.h"
#include "engine/models/moe_experts.h"
#include "kernels/packed_matrix.h"

namespace tessera::engine {

struct QuantizedExpert {
  kernels::PackedMatrix gate_up;  // [2 * intermediate, hidden]: gate rows, then up rows.
  kernels::PackedMatrix down;     // [hidden, intermediate]
};

// Experts [first, first + count) of `num_experts` cut from a dense FFN's GGUF tensors (gate
// and up [hidden -> intermediate], down [intermediate -> hidden]). InvalidArgument, naming
// the tensor, unless the intermediate size splits into whole 32-element quantization blocks.
absl::StatusOr<std::vector<QuantizedExpert>> SplitDenseFfn(const GgufTensor& gate,
                                                           const GgufTensor& up,
                                                           const GgufTensor& down,
                                                           int32_t num_experts, int32_t first,
                                                           int32_t count);

class QuantizedExperts final : public ExpertBlock {
 public:
  QuantizedExperts(int32_t hidden, int32_t intermediate, std::vector<QuantizedExpert> experts);

  int32_t num_experts() const override { return static_cast<int32_t>(experts_.size()); }
  void Forward(const float* x, int64_t tokens, const int32_t* ids, const float* weights,
               int32_t top_k, float* out, kernels::ThreadPool& pool) override;

 private:
  const int32_t hidden_;
  const int32_t intermediate_;
  std::vector<QuantizedExpert> experts_;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_QUANTIZED_EXPERTS_H_
