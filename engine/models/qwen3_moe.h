// Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B and their family), loaded from a Hugging Face
// checkpoint directory (config.json and safetensors, weights kept in fp32): RMSNorm, per-head
// RMSNorm of queries and keys, half-split RoPE, grouped-query attention over the paged KV
// cache, and mixture-of-experts feed-forward blocks with softmax top-k routing (optionally
// renormalized; dense SwiGLU blocks where mlp_only_layers / decoder_sparse_step say so).
// The dense families built of the same blocks load here too: Qwen3 (model_type "qwen3") and
// Llama ("llama": no query/key norms), every feed-forward block dense.
// Thread-safety: as Model.
#ifndef TESSERA_ENGINE_MODELS_QWEN3_MOE_H_
#define TESSERA_ENGINE_MODELS_QWEN3_MOE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/models/model.h"

namespace tessera::engine {

absl::StatusOr<std::unique_ptr<Model>> LoadQwen3Moe(const std::string& checkpoint_dir,
                                                    const ModelOptions& options);
absl::StatusOr<std::unique_ptr<Model>> LoadQwen3(const std::string& checkpoint_dir,
                                                 const ModelOptions& options);
absl::StatusOr<std::unique_ptr<Model>> LoadHfLlama(const std::string& checkpoint_dir,
                                                   const ModelOptions& options);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_QWEN3_MOE_H_
