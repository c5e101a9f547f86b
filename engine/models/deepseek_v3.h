// DeepSeek-V3 (and R1), loaded from a Hugging Face checkpoint directory (config.json and
// safetensors, weights kept in fp32):
// - multi-head latent attention. The KV cache holds only the compressed latent (the normalized
//   kv_lora_rank vector and the rotated shared key part) per position; the up-projections are
//   absorbed into the query and the output, so attention runs as multi-query attention over
//   the latents, through the same paged cache, block manager and transfer as any other KV;
// - the first first_k_dense_replace layers dense, the rest mixture-of-experts with shared
//   experts and sigmoid, group-limited routing with the score correction bias.
// rope_scaling may be YaRN, as in DeepSeek-V3's own config. Not supported: the
// multi-token-prediction layers.
// Thread-safety: as Model.
#ifndef TESSERA_ENGINE_MODELS_DEEPSEEK_V3_H_
#define TESSERA_ENGINE_MODELS_DEEPSEEK_V3_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/models/model.h"

namespace tessera::engine {

absl::StatusOr<std::unique_ptr<Model>> LoadDeepseekV3(const std::string& checkpoint_dir,
                                                      const ModelOptions& options);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_DEEPSEEK_V3_H_
