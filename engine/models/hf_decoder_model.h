// The frame that decoder-only models loaded from Hugging Face checkpoints share: embedding,
// then per layer an attention block and a feed-forward block (both adding into the residual
// stream x_), then the final norm and the vocabulary projection for the tokens that want
// logits. Each architecture supplies its two blocks and its loading.
// Thread-safety: as Model.
#ifndef TESSERA_ENGINE_MODELS_HF_DECODER_MODEL_H_
#define TESSERA_ENGINE_MODELS_HF_DECODER_MODEL_H_

#include <span>
#include <vector>

#include "absl/status/status.h"
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

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_HF_DECODER_MODEL_H_
