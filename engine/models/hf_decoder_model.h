// The frame that decoder-only models loaded from Hugging Face checkpoints share: embedding,
// then per layer an attention block and a feed-forward block (both adding into the residual
// stream x_), then the final norm and the vocabulary projection for the tokens that want
// logits. Each architecture supplies its two blocks and its loading.
// Thread-safety: as Model.
#ifndef TESSERA_ENGINE_MODELS_HF_DECODER_MODEL_H_
#define TESSERA_ENGINE_MODELS_HF_DECODER_MODEL_H_

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/models/fp32_model_parts.h"
#include "engine/models/model.h"
#include "engine/safetensors/hf_checkpoint.h"
#include "kernels/thread_pool.h"

namespace tessera::engine {

class HfDecoderModel : public Model {
 public:
  const ModelConfig& config() const final { return config_; }
  absl::Status Forward(std::span<const SequenceStep> batch, kvcache::PagedKvCache& cache,
                       std::span<float> logits, const ForwardOptions& options) final;

 protected:
  explicit HfDecoderModel(kernels::ThreadPool& pool) : pool_(pool) {}

  // Adds layer `layer`'s attention output to x_ (writing the step's KV into `cache`).
  virtual void Attention(int32_t layer, std::span<const SequenceStep> batch,
                         kvcache::PagedKvCache& cache) = 0;
  // Adds layer `layer`'s feed-forward output to x_.
  virtual absl::Status FeedForward(int32_t layer) = 0;

  // Loads model.embed_tokens, model.norm and lm_head (or ties it to the embedding), after
  // config_ has its hidden and vocabulary sizes.
  absl::Status LoadEmbeddingsAndHead(const HfCheckpoint& checkpoint, bool tied);

  kernels::ThreadPool& pool_;
  ModelConfig config_;
  std::vector<float> embedding_;   // [vocab, hidden]
  std::vector<float> final_norm_;  // [hidden]
  std::vector<float> lm_head_;     // [vocab, hidden]
  // The step being computed.
  StepTokens step_;
  int64_t tokens_ = 0;
  std::vector<float> x_;       // The residual stream, [tokens_, hidden].
  std::vector<float> normed_;  // Scratch, [tokens_, hidden].
};

// Opens the checkpoint at `dir`, checks its model_type, and loads a ModelType (constructed
// from the pool and the expert group; its Load(const HfCheckpoint&) reads the weights).
template <typename ModelType>
absl::StatusOr<std::unique_ptr<Model>> LoadHfModel(const std::string& dir,
                                                   const ModelOptions& options,
                                                   absl::string_view model_type) {
  if (options.pool == nullptr) return absl::InvalidArgumentError("ModelOptions.pool is required");
  absl::StatusOr<std::unique_ptr<HfCheckpoint>> checkpoint = HfCheckpoint::Open(dir);
  if (!checkpoint.ok()) return checkpoint.status();
  absl::StatusOr<std::string> type = (*checkpoint)->String("model_type", "");
  if (!type.ok()) return type.status();
  if (*type != model_type) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/config.json: model_type \"", *type, "\" is not ", model_type));
  }
  auto model = std::make_unique<ModelType>(*options.pool, options.expert_group);
  if (absl::Status s = model->Load(**checkpoint); !s.ok()) return s;
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_HF_DECODER_MODEL_H_
