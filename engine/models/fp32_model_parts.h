// Pieces the models share: where a step's tokens sit, and, for models loaded from Hugging
// Face checkpoints with fp32 weights, embedding, the output logits and SwiGLU weights.
// Thread-safety: functions are as thread-safe as their arguments.
#ifndef TESSERA_ENGINE_MODELS_FP32_MODEL_PARTS_H_
#define TESSERA_ENGINE_MODELS_FP32_MODEL_PARTS_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/models/model.h"
#include "engine/models/moe_experts.h"
#include "engine/safetensors/hf_checkpoint.h"
#include "kernels/thread_pool.h"

namespace tessera::engine {

// A step's new tokens in batch order: each one's sequence and position, and the rows whose
// logits are wanted (the last token of each sequence that wants them).
struct StepTokens {
  int64_t count = 0;
  std::vector<int32_t> sequence;
  std::vector<int32_t> position;
  std::vector<int64_t> logit_rows;

  void Gather(std::span<const SequenceStep> batch);
};

// x[t] = table[token t], rows of `hidden`.
void EmbedTokens(const std::vector<float>& table, int64_t hidden,
                 std::span<const SequenceStep> batch, float* x);

// For each of `rows`: RMSNorm of x's row with `norm`, then the vocabulary projection, written
// to consecutive rows of `logits`. `scratch` is reused.
void OutputLogits(const float* x, int64_t hidden, std::span<const int64_t> rows,
                  const std::vector<float>& norm, float epsilon, const std::vector<float>& lm_head,
                  int32_t vocab, std::vector<float>& scratch, std::span<float> logits,
                  kernels::ThreadPool& pool);

// The gate_proj, up_proj and down_proj weights under `prefix` (e.g. "model.layers.3.mlp.").
absl::StatusOr<ExpertWeights> LoadSwiGlu(const HfCheckpoint& checkpoint, const std::string& prefix,
                                         int64_t hidden, int64_t intermediate);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_FP32_MODEL_PARTS_H_
