#include "engine/models/fp32_model_parts.h"

#include <algorithm>

#include "common/status_macros.h"
#include "kernels/matmul_f32.h"
#include "kernels/ops.h"

namespace tessera::engine {

void StepTokens::Gather(std::span<const SequenceStep> batch) {
  count = 0;
  sequence.clear();
  position.clear();
  logit_rows.clear();
  for (size_t s = 0; s < batch.size(); ++s) {
    for (size_t i = 0; i < batch[s].tokens.size(); ++i) {
      sequence.push_back(static_cast<int32_t>(s));
      position.push_back(batch[s].start_pos + static_cast<int32_t>(i));
    }
    count += static_cast<int64_t>(batch[s].tokens.size());
    if (batch[s].want_logits) logit_rows.push_back(count - 1);
  }
}

void EmbedTokens(const std::vector<float>& table, int64_t hidden,
                 std::span<const SequenceStep> batch, float* x) {
  int64_t t = 0;
  for (const SequenceStep& seq : batch) {
    for (int32_t token : seq.tokens) {
      std::copy_n(table.data() + int64_t{token} * hidden, hidden, x + (t++) * hidden);
    }
  }
}

void OutputLogits(const float* x, int64_t hidden, std::span<const int64_t> rows,
                  const std::vector<float>& norm, float epsilon, const std::vector<float>& lm_head,
                  int32_t vocab, std::vector<float>& scratch, std::span<float> logits,
                  kernels::ThreadPool& pool) {
  if (rows.empty()) return;
  scratch.resize(rows.size() * static_cast<size_t>(hidden));
  for (size_t i = 0; i < rows.size(); ++i) {
    kernels::RmsNorm(x + rows[i] * hidden, norm.data(), hidden, epsilon,
                     scratch.data() + i * hidden);
  }
  kernels::MatmulF32(lm_head.data(), vocab, hidden, scratch.data(),
                     static_cast<int64_t>(rows.size()), logits.data(), vocab, pool);
}

absl::StatusOr<ExpertWeights> LoadSwiGlu(const HfCheckpoint& checkpoint, const std::string& prefix,
                                         int64_t hidden, int64_t intermediate) {
  ExpertWeights w;
  TESSERA_ASSIGN_OR_RETURN(w.gate_up,
                           checkpoint.Tensor(prefix + "gate_proj.weight", {intermediate, hidden}));
  TESSERA_ASSIGN_OR_RETURN(std::vector<float> up,
                           checkpoint.Tensor(prefix + "up_proj.weight", {intermediate, hidden}));
  w.gate_up.insert(w.gate_up.end(), up.begin(), up.end());
  TESSERA_ASSIGN_OR_RETURN(w.down,
                           checkpoint.Tensor(prefix + "down_proj.weight", {hidden, intermediate}));
  return w;
}

}  // namespace tessera::engine
