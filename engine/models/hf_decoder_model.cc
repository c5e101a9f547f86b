#include "engine/models/hf_decoder_model.h"

#include "common/status_macros.h"
#include "engine/models/step_validation.h"

namespace tessera::engine {

absl::Status HfDecoderModel::Forward(std::span<const SequenceStep> batch,
                                     kvcache::PagedKvCache& cache, std::span<float> logits,
                                     const ForwardOptions& options) {
  TESSERA_RETURN_IF_ERROR(ValidateStep(config_, batch, cache, logits));
  const int64_t hidden = config_.hidden_size;
  step_.Gather(batch);
  tokens_ = step_.count;
  x_.resize(static_cast<size_t>(tokens_ * hidden));
  normed_.resize(static_cast<size_t>(tokens_ * hidden));
  EmbedTokens(embedding_, hidden, batch, x_.data());
  for (int32_t layer = 0; layer < config_.num_layers; ++layer) {
    Attention(layer, batch, cache);
    if (options.on_layer_done) options.on_layer_done(layer);
    TESSERA_RETURN_IF_ERROR(FeedForward(layer));
  }
  OutputLogits(x_.data(), hidden, step_.logit_rows, final_norm_, config_.rms_norm_epsilon, lm_head_,
               config_.vocab_size, normed_, logits, pool_);
  return absl::OkStatus();
}

absl::Status HfDecoderModel::LoadEmbeddingsAndHead(const HfCheckpoint& ck, bool tied) {
  const int64_t hidden = config_.hidden_size;
  const int64_t vocab = config_.vocab_size;
  TESSERA_ASSIGN_OR_RETURN(embedding_, ck.Tensor("model.embed_tokens.weight", {vocab, hidden}));
  TESSERA_ASSIGN_OR_RETURN(final_norm_, ck.Tensor("model.norm.weight", {hidden}));
  if (tied || !ck.HasTensor("lm_head.weight")) {
    lm_head_ = embedding_;
    return absl::OkStatus();
  }
  TESSERA_ASSIGN_OR_RETURN(lm_head_, ck.Tensor("lm_head.weight", {vocab, hidden}));
  return absl::OkStatus();
}

}  // namespace tessera::engine
