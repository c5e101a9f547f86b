// The frame that decoder-only models loaded from Hugging Face checkpoints share: embedding,
// then per layer an attention block and a feed-forward block (both adding into the residual
// stream), then the final norm and the vocabulary projection for the tokens that want
// logits. Each architecture supplies its two blocks and its loading. With expert parallelism
// and overlap on, the frame splits each step into two micro-batches (see MicroBatch).
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
#include "comm/communicator.h"
#include "engine/models/compute_baton.h"
#include "engine/models/expert_parallel.h"
#include "engine/models/fp32_model_parts.h"
#include "engine/models/model.h"
#include "engine/safetensors/hf_checkpoint.h"
#include "kernels/thread_pool.h"

namespace tessera::engine {

class HfDecoderModel : public Model {
 public:
  ~HfDecoderModel() override;
  const ModelConfig& config() const final { return config_; }
  absl::Status Forward(std::span<const SequenceStep> batch, kvcache::PagedKvCache& cache,
                       std::span<float> logits, const ForwardOptions& options) final;
  // Keeps the checkpoint the model loads from (the rebalancer reads experts from it later).
  const HfCheckpoint& AdoptCheckpoint(std::unique_ptr<HfCheckpoint> checkpoint) {
    checkpoint_ = std::move(checkpoint);
    return *checkpoint_;
  }

  ExpertTokenCounts expert_token_counts() const final {
    return CollectExpertTokenCounts(routed_layers_);
  }

 protected:
  // Some of a step's sequences and their activations. A step is one micro-batch, or, when the
  // model overlaps expert-parallel communication with compute, two that go through the layers
  // on two threads taking turns (ComputeBaton): while one waits for its dispatch or combine,
  // the other computes.
  struct MicroBatch {
    int lane = 0;  // Which micro-batch: 0 or 1 (its scratch and its communicator).
    // With two lanes: held while this lane computes, handed over in collectives.
    ComputeBaton* baton = nullptr;
    std::span<const SequenceStep> batch;
    StepTokens step;
    int64_t tokens = 0;
    std::vector<float> x;       // The residual stream, [tokens, hidden].
    std::vector<float> normed;  // Scratch, [tokens, hidden].
  };

  // Two lanes when options.overlap_group is set, else one.
  HfDecoderModel(const ModelOptions& options);

  int num_lanes() const { return static_cast<int>(lanes_.size()); }
  // The expert-parallel communicators, one per lane; empty without a group.
  const std::vector<comm::Communicator*>& expert_lanes() const { return expert_lanes_; }
  MoeLayerTimes* moe_times() const { return moe_times_; }
  const ExpertBalancing& expert_balancing() const { return balancing_; }

  // Adds layer `layer`'s attention output to mb.x (writing the step's KV into `cache`). Not
  // called for a micro-batch without tokens.
  virtual void Attention(int32_t layer, MicroBatch& mb, kvcache::PagedKvCache& cache) = 0;
  // Adds layer `layer`'s feed-forward output to mb.x. Called for every micro-batch, even one
  // without tokens: an expert-parallel layer's collectives need every rank's every lane.
  virtual absl::Status FeedForward(int32_t layer, MicroBatch& mb) = 0;

  // Loads model.embed_tokens, model.norm and lm_head (or ties it to the embedding), after
  // config_ has its hidden and vocabulary sizes.
  absl::Status LoadEmbeddingsAndHead(const HfCheckpoint& checkpoint, bool tied);

  kernels::ThreadPool& pool_;
  ModelConfig config_;
  std::vector<float> embedding_;   // [vocab, hidden]
  std::vector<float> final_norm_;  // [hidden]
  std::vector<float> lm_head_;     // [vocab, hidden]
  // The layers with routed experts, as the architecture loads them.
  std::vector<std::pair<int32_t, const RoutedExperts*>> routed_layers_;

 private:
  class LaneThread;
  class LayerProgress;

  // Runs `mb` through every layer and writes its logits.
  absl::Status RunMicroBatch(MicroBatch& mb, kvcache::PagedKvCache& cache, std::span<float> logits,
                             LayerProgress& progress);

  std::vector<comm::Communicator*> expert_lanes_;
  MoeLayerTimes* const moe_times_;
  const ExpertBalancing balancing_;
  std::unique_ptr<HfCheckpoint> checkpoint_;
  std::vector<MicroBatch> lanes_;
  std::unique_ptr<LaneThread> lane_thread_;  // Runs lane 1.
  ComputeBaton baton_;                        // Two lanes take turns computing.
  const int32_t overlap_min_tokens_;
  std::vector<float> logits_scratch_[2];
};

// Opens the checkpoint at `dir`, checks its model_type, and loads a ModelType (constructed
// from the options; its Load(const HfCheckpoint&) reads the weights).
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
  if (options.overlap_group != nullptr &&
      (options.expert_group == nullptr ||
       options.overlap_group->size() != options.expert_group->size() ||
       options.overlap_group->rank() != options.expert_group->rank())) {
    return absl::InvalidArgumentError(
        "ModelOptions.overlap_group needs an expert_group of the same ranks");
  }
  auto model = std::make_unique<ModelType>(options);
  if (absl::Status s = model->Load(model->AdoptCheckpoint(*std::move(checkpoint))); !s.ok()) {
    return s;
  }
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_HF_DECODER_MODEL_H_
