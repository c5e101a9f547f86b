#include "engine/models/deepseek_v3.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "comm/communicator.h"
#include "common/status_macros.h"
#include "engine/models/expert_parallel.h"
#include "engine/models/fp32_model_parts.h"
#include "engine/models/hf_decoder_model.h"
#include "engine/models/moe_experts.h"
#include "engine/models/rope_scaling.h"
#include "engine/safetensors/hf_checkpoint.h"
#include "kernels/attention.h"
#include "kernels/fp16.h"
#include "kernels/matmul_f32.h"
#include "kernels/ops.h"

namespace tessera::engine {
namespace {

struct DeepseekLayer {
  std::vector<float> input_norm, post_attention_norm;
  std::vector<float> q_a, q_a_norm, q_b;  // q_lora_rank > 0
  std::vector<float> q;                   // q_lora_rank == 0: [heads * qk_head_dim, hidden]
  std::vector<float> kv_a;                // [kv_lora + rope, hidden]
  std::vector<float> kv_a_norm;           // [kv_lora]
  std::vector<float> kv_b;                // [heads * (nope + v), kv_lora]
  std::vector<float> output;              // [hidden, heads * v]
  bool sparse = false;
  std::vector<float> router;              // [experts, hidden]
  std::vector<float> correction_bias;     // [experts]
  std::unique_ptr<MoeExperts> experts;    // Dense layers: the MLP.
  std::unique_ptr<RoutedExperts> routed;  // Sparse layers: here or across the group.
  std::unique_ptr<MoeExperts> shared;     // Shared experts (sparse layers).
};

class DeepseekV3Model final : public HfDecoderModel {
 public:
  explicit DeepseekV3Model(const ModelOptions& options) : HfDecoderModel(options) {}

  absl::Status Load(const HfCheckpoint& checkpoint);

 private:
  void Attention(int32_t layer, MicroBatch& mb, kvcache::PagedKvCache& cache) override;
  absl::Status FeedForward(int32_t layer, MicroBatch& mb) override;

  int64_t heads_ = 0, q_lora_ = 0, kv_lora_ = 0, nope_ = 0, rope_ = 0, v_dim_ = 0;
  bool rope_interleave_ = true;
  std::vector<float> rope_inv_freq_;  // Per rotated pair (YaRN-scaled when the config says so).
  float rope_magnitude_ = 1.0f;       // On cos and sin.
  float softmax_scale_ = 1.0f;
  int32_t experts_ = 0, top_k_ = 0, groups_ = 0, top_groups_ = 0;
  bool normalize_ = true;
  float routed_scaling_ = 1.0f;
  std::vector<DeepseekLayer> layers_;

  // Per-step scratch, one set per lane.
  struct Scratch {
    std::vector<float> q_lat_in, q_full, kv_a_out, query, attn, heads_out, delta, router_logits,
        route_weights;
    std::vector<int32_t> route_ids;
  };
  Scratch scratch_[2];
};

absl::Status DeepseekV3Model::Load(const HfCheckpoint& ck) {
  const std::string config_path = ck.directory() + "/config.json";
  TESSERA_ASSIGN_OR_RETURN(int64_t hidden, ck.Int("hidden_size", 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t layers, ck.Int("num_hidden_layers", 1));
  TESSERA_ASSIGN_OR_RETURN(heads_, ck.Int("num_attention_heads", 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t vocab, ck.Int("vocab_size", 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t dense_inter, ck.Int("intermediate_size", 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t moe_inter, ck.Int("moe_intermediate_size", 1));
  TESSERA_ASSIGN_OR_RETURN(q_lora_, ck.Int("q_lora_rank", 0, 0));
  TESSERA_ASSIGN_OR_RETURN(kv_lora_, ck.Int("kv_lora_rank", 1));
  TESSERA_ASSIGN_OR_RETURN(nope_, ck.Int("qk_nope_head_dim", 1));
  TESSERA_ASSIGN_OR_RETURN(rope_, ck.Int("qk_rope_head_dim", 2));
  TESSERA_ASSIGN_OR_RETURN(v_dim_, ck.Int("v_head_dim", 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t experts, ck.Int("n_routed_experts", 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t shared, ck.Int("n_shared_experts", 0, 0));
  TESSERA_ASSIGN_OR_RETURN(int64_t top_k, ck.Int("num_experts_per_tok", 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t groups, ck.Int("n_group", 1, 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t top_groups, ck.Int("topk_group", 1, 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t first_dense, ck.Int("first_k_dense_replace", 0, 0));
  TESSERA_ASSIGN_OR_RETURN(int64_t layer_freq, ck.Int("moe_layer_freq", 1, 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t context, ck.Int("max_position_embeddings", 1));
  TESSERA_ASSIGN_OR_RETURN(double eps, ck.Float("rms_norm_eps", 1e-6));
  TESSERA_ASSIGN_OR_RETURN(double rope_theta, ck.Float("rope_theta", 10000.0));
  TESSERA_ASSIGN_OR_RETURN(double scaling, ck.Float("routed_scaling_factor", 1.0));
  TESSERA_ASSIGN_OR_RETURN(normalize_, ck.Bool("norm_topk_prob", true));
  TESSERA_ASSIGN_OR_RETURN(rope_interleave_, ck.Bool("rope_interleave", true));
  TESSERA_ASSIGN_OR_RETURN(bool tied, ck.Bool("tie_word_embeddings", false));
  TESSERA_ASSIGN_OR_RETURN(std::string scoring, ck.String("scoring_func", "sigmoid"));
  if (scoring != "sigmoid") {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": scoring_func \"", scoring, "\" is not supported (sigmoid)"));
  }
  TESSERA_ASSIGN_OR_RETURN(RopeScaling rope,
                           ReadRopeScaling(ck.config(), rope_, rope_theta, config_path));
  rope_inv_freq_ = std::move(rope.inv_freq);
  rope_magnitude_ = rope.magnitude;
  // YaRN also sharpens the softmax, by mscale(factor, mscale_all_dim)^2 (transformers'
  // yarn_apply_mscale).
  softmax_scale_ = 1.0f / std::sqrt(static_cast<float>(nope_ + rope_));
  if (rope.yarn && rope.mscale_all_dim != 0) {
    const double m = YarnMscale(rope.factor, rope.mscale_all_dim);
    softmax_scale_ = static_cast<float>(softmax_scale_ * m * m);
  }
  if (experts % groups != 0 || top_groups > groups || top_k > top_groups * (experts / groups)) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": n_routed_experts ", experts, ", n_group ", groups, ", topk_group ",
        top_groups, " and num_experts_per_tok ", top_k, " do not fit together"));
  }
  if (kv_lora_ + rope_ > kernels::kMaxHeadDim || rope_ % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": kv_lora_rank + qk_rope_head_dim = ", kv_lora_ + rope_,
        " exceeds the attention kernels' ", kernels::kMaxHeadDim, ", or the rope part is odd"));
  }
  config_.architecture = "deepseek_v3";
  config_.name = ck.directory();
  config_.num_layers = static_cast<int32_t>(layers);
  config_.hidden_size = static_cast<int32_t>(hidden);
  config_.num_heads = static_cast<int32_t>(heads_);
  // The cache holds one latent "head" per position: [normalized c_kv | rotated k_pe].
  config_.num_kv_heads = 1;
  config_.head_dim = static_cast<int32_t>(kv_lora_ + rope_);
  config_.intermediate_size = static_cast<int32_t>(moe_inter);
  config_.vocab_size = static_cast<int32_t>(vocab);
  config_.context_length = static_cast<int32_t>(context);
  config_.rope_dim = static_cast<int32_t>(rope_);
  config_.rope_base = static_cast<float>(rope_theta);
  config_.rms_norm_epsilon = static_cast<float>(eps);
  experts_ = static_cast<int32_t>(experts);
  top_k_ = static_cast<int32_t>(top_k);
  groups_ = static_cast<int32_t>(groups);
  top_groups_ = static_cast<int32_t>(top_groups);
  routed_scaling_ = static_cast<float>(scaling);

  TESSERA_RETURN_IF_ERROR(LoadEmbeddingsAndHead(ck, tied));
  const int64_t qk_dim = nope_ + rope_;
  layers_.resize(static_cast<size_t>(layers));
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    DeepseekLayer& l = layers_[static_cast<size_t>(i)];
    TESSERA_ASSIGN_OR_RETURN(l.input_norm, ck.Tensor(p + "input_layernorm.weight", {hidden}));
    TESSERA_ASSIGN_OR_RETURN(l.post_attention_norm,
                             ck.Tensor(p + "post_attention_layernorm.weight", {hidden}));
    const std::string a = p + "self_attn.";
    if (q_lora_ > 0) {
      TESSERA_ASSIGN_OR_RETURN(l.q_a, ck.Tensor(a + "q_a_proj.weight", {q_lora_, hidden}));
      TESSERA_ASSIGN_OR_RETURN(l.q_a_norm, ck.Tensor(a + "q_a_layernorm.weight", {q_lora_}));
      TESSERA_ASSIGN_OR_RETURN(l.q_b, ck.Tensor(a + "q_b_proj.weight", {heads_ * qk_dim, q_lora_}));
    } else {
      TESSERA_ASSIGN_OR_RETURN(l.q, ck.Tensor(a + "q_proj.weight", {heads_ * qk_dim, hidden}));
    }
    TESSERA_ASSIGN_OR_RETURN(
        l.kv_a, ck.Tensor(a + "kv_a_proj_with_mqa.weight", {kv_lora_ + rope_, hidden}));
    TESSERA_ASSIGN_OR_RETURN(l.kv_a_norm, ck.Tensor(a + "kv_a_layernorm.weight", {kv_lora_}));
    TESSERA_ASSIGN_OR_RETURN(
        l.kv_b, ck.Tensor(a + "kv_b_proj.weight", {heads_ * (nope_ + v_dim_), kv_lora_}));
    TESSERA_ASSIGN_OR_RETURN(l.output, ck.Tensor(a + "o_proj.weight", {hidden, heads_ * v_dim_}));

    auto load_mlp = [&](const std::string& prefix, int64_t inter,
                        std::vector<ExpertWeights>& into) -> absl::Status {
      TESSERA_ASSIGN_OR_RETURN(ExpertWeights w, LoadSwiGlu(ck, prefix, hidden, inter));
      into.push_back(std::move(w));
      return absl::OkStatus();
    };
    l.sparse = i >= first_dense && i % layer_freq == 0;
    std::vector<ExpertWeights> weights;
    if (l.sparse) {
      TESSERA_ASSIGN_OR_RETURN(l.router, ck.Tensor(p + "mlp.gate.weight", {experts, hidden}));
      TESSERA_ASSIGN_OR_RETURN(l.correction_bias,
                               ck.Tensor(p + "mlp.gate.e_score_correction_bias", {experts}));
      TESSERA_ASSIGN_OR_RETURN(
          l.routed, RoutedExperts::Load(ck, p + "mlp.experts.", experts, hidden, moe_inter,
                                        expert_lanes(), moe_times(), expert_balancing()));
      routed_layers_.emplace_back(static_cast<int32_t>(i), l.routed.get());
      if (shared > 0) {
        std::vector<ExpertWeights> shared_weights;
        TESSERA_RETURN_IF_ERROR(
            load_mlp(p + "mlp.shared_experts.", moe_inter * shared, shared_weights));
        l.shared =
            std::make_unique<MoeExperts>(hidden, moe_inter * shared, std::move(shared_weights));
      }
    } else {
      TESSERA_RETURN_IF_ERROR(load_mlp(p + "mlp.", dense_inter, weights));
      l.experts = std::make_unique<MoeExperts>(hidden, dense_inter, std::move(weights));
    }
  }
  return absl::OkStatus();
}

void DeepseekV3Model::Attention(int32_t layer, MicroBatch& mb, kvcache::PagedKvCache& cache) {
  Scratch& s = scratch_[mb.lane];
  const DeepseekLayer& w = layers_[static_cast<size_t>(layer)];
  const int64_t hidden = config_.hidden_size;
  const int64_t qk_dim = nope_ + rope_;
  const int64_t latent = kv_lora_ + rope_;   // One cache row.
  const int64_t kv_b_rows = nope_ + v_dim_;  // Per head in kv_b.
  const int32_t block_size = cache.shape().block_size;
  mb.normed.resize(static_cast<size_t>(mb.tokens * hidden));
  for (int64_t t = 0; t < mb.tokens; ++t) {
    kernels::RmsNorm(mb.x.data() + t * hidden, w.input_norm.data(), hidden,
                     config_.rms_norm_epsilon, mb.normed.data() + t * hidden);
  }
  // Queries.
  s.q_full.resize(static_cast<size_t>(mb.tokens * heads_ * qk_dim));
  if (q_lora_ > 0) {
    s.q_lat_in.resize(static_cast<size_t>(mb.tokens * q_lora_));
    kernels::MatmulF32(w.q_a.data(), q_lora_, hidden, mb.normed.data(), mb.tokens,
                       s.q_lat_in.data(), q_lora_, pool_);
    for (int64_t t = 0; t < mb.tokens; ++t) {
      kernels::RmsNorm(s.q_lat_in.data() + t * q_lora_, w.q_a_norm.data(), q_lora_,
                       config_.rms_norm_epsilon, s.q_lat_in.data() + t * q_lora_);
    }
    kernels::MatmulF32(w.q_b.data(), heads_ * qk_dim, q_lora_, s.q_lat_in.data(), mb.tokens,
                       s.q_full.data(), heads_ * qk_dim, pool_);
  } else {
    kernels::MatmulF32(w.q.data(), heads_ * qk_dim, hidden, mb.normed.data(), mb.tokens,
                       s.q_full.data(), heads_ * qk_dim, pool_);
  }
  // The compressed KV: [c_kv | k_pe] per token.
  s.kv_a_out.resize(static_cast<size_t>(mb.tokens * latent));
  kernels::MatmulF32(w.kv_a.data(), latent, hidden, mb.normed.data(), mb.tokens, s.kv_a_out.data(),
                     latent, pool_);
  // Each head's query in the latent space: [W_UK_h^T q_nope_h | rotated q_pe_h], so attention
  // is multi-query attention over the cached latents.
  s.query.assign(static_cast<size_t>(mb.tokens * heads_ * latent), 0.0f);
  for (int64_t t = 0; t < mb.tokens; ++t) {
    float* kv = s.kv_a_out.data() + t * latent;
    kernels::RmsNorm(kv, w.kv_a_norm.data(), kv_lora_, config_.rms_norm_epsilon, kv);
    // Interleaved weights rotate adjacent pairs; both the query's and the key's rope parts use
    // the same layout, so their dot products are those of the reference.
    auto rotate = [&](float* x, int64_t n_heads, int64_t stride) {
      for (int64_t h = 0; h < n_heads; ++h) {
        if (rope_interleave_) {
          kernels::ApplyRope(x + h * stride, 1, rope_, rope_, mb.step.position[t],
                             rope_inv_freq_.data(), rope_magnitude_);
        } else {
          kernels::ApplyRopeHalves(x + h * stride, 1, rope_, rope_, mb.step.position[t],
                                   rope_inv_freq_.data(), rope_magnitude_);
        }
      }
    };
    rotate(kv + kv_lora_, 1, latent);
    float* q = s.q_full.data() + t * heads_ * qk_dim;
    rotate(q + nope_, heads_, qk_dim);
    for (int64_t h = 0; h < heads_; ++h) {
      float* out = s.query.data() + (t * heads_ + h) * latent;
      const float* q_nope = q + h * qk_dim;
      for (int64_t d = 0; d < nope_; ++d) {
        const float* row = w.kv_b.data() + (h * kv_b_rows + d) * kv_lora_;
        for (int64_t c = 0; c < kv_lora_; ++c) out[c] += q_nope[d] * row[c];
      }
      std::copy_n(q + h * qk_dim + nope_, rope_, out + kv_lora_);
    }
    const SequenceStep& seq = mb.batch[static_cast<size_t>(mb.step.sequence[t])];
    const int32_t pos = mb.step.position[t];
    const kvcache::BlockId block = seq.block_table[static_cast<size_t>(pos / block_size)];
    uint16_t* key_row = cache.keys(layer, block) + (pos % block_size) * latent;
    uint16_t* value_row = cache.values(layer, block) + (pos % block_size) * latent;
    for (int64_t i = 0; i < latent; ++i) {
      key_row[i] = kernels::Fp32ToFp16(kv[i]);
      // Values are the latents alone: the rope part contributes nothing.
      value_row[i] = i < kv_lora_ ? key_row[i] : 0;
    }
  }
  s.attn.resize(static_cast<size_t>(mb.tokens * heads_ * latent));
  const kernels::AttentionShape shape{config_.num_heads, 1, static_cast<int32_t>(latent),
                                      block_size, softmax_scale_};
  int64_t row = 0;
  for (const SequenceStep& seq : mb.batch) {
    std::vector<const uint16_t*> keys, values;
    for (kvcache::BlockId b : seq.block_table) {
      keys.push_back(cache.keys(layer, b));
      values.push_back(cache.values(layer, b));
    }
    const kernels::PagedKv kv{keys.data(), values.data()};
    const int n = static_cast<int>(seq.tokens.size());
    kernels::AttendTile(shape, kv, s.query.data() + row * heads_ * latent, heads_ * latent,
                        seq.start_pos, n, 0, s.attn.data() + row * heads_ * latent,
                        heads_ * latent);
    row += n;
  }
  // Back out of the latent space: out_h = W_UV_h o_lat_h.
  s.heads_out.assign(static_cast<size_t>(mb.tokens * heads_ * v_dim_), 0.0f);
  for (int64_t t = 0; t < mb.tokens; ++t) {
    for (int64_t h = 0; h < heads_; ++h) {
      const float* o_lat = s.attn.data() + (t * heads_ + h) * latent;
      float* out = s.heads_out.data() + (t * heads_ + h) * v_dim_;
      for (int64_t j = 0; j < v_dim_; ++j) {
        const float* r = w.kv_b.data() + (h * kv_b_rows + nope_ + j) * kv_lora_;
        float sum = 0.0f;
        for (int64_t c = 0; c < kv_lora_; ++c) sum += r[c] * o_lat[c];
        out[j] = sum;
      }
    }
  }
  s.delta.resize(static_cast<size_t>(mb.tokens * hidden));
  kernels::MatmulF32(w.output.data(), hidden, heads_ * v_dim_, s.heads_out.data(), mb.tokens,
                     s.delta.data(), hidden, pool_);
  for (size_t i = 0; i < s.delta.size(); ++i) mb.x[i] += s.delta[i];
}

absl::Status DeepseekV3Model::FeedForward(int32_t layer, MicroBatch& mb) {
  Scratch& s = scratch_[mb.lane];
  DeepseekLayer& w = layers_[static_cast<size_t>(layer)];
  const int64_t hidden = config_.hidden_size;
  for (int64_t t = 0; t < mb.tokens; ++t) {
    kernels::RmsNorm(mb.x.data() + t * hidden, w.post_attention_norm.data(), hidden,
                     config_.rms_norm_epsilon, mb.normed.data() + t * hidden);
  }
  if (!w.sparse) {
    w.experts->ForwardDense(mb.normed.data(), mb.tokens, mb.x.data(), pool_);
    return absl::OkStatus();
  }
  std::optional<PhaseTimer> routing(std::in_place, moe_times(), &MoeLayerTimes::routing_ns);
  s.router_logits.resize(static_cast<size_t>(mb.tokens * experts_));
  kernels::MatmulF32(w.router.data(), experts_, hidden, mb.normed.data(), mb.tokens,
                     s.router_logits.data(), experts_, pool_);
  s.route_ids.resize(static_cast<size_t>(mb.tokens * top_k_));
  s.route_weights.resize(static_cast<size_t>(mb.tokens * top_k_));
  for (int64_t t = 0; t < mb.tokens; ++t) {
    SigmoidGroupTopK(s.router_logits.data() + t * experts_, w.correction_bias.data(), experts_,
                     groups_, top_groups_, top_k_, normalize_, routed_scaling_,
                     s.route_ids.data() + t * top_k_, s.route_weights.data() + t * top_k_);
  }
  routing.reset();
  TESSERA_RETURN_IF_ERROR(w.routed->Forward(mb.normed.data(), mb.tokens, s.route_ids.data(),
                                            s.route_weights.data(), top_k_, mb.x.data(), pool_,
                                            mb.lane, mb.baton));
  if (w.shared != nullptr) w.shared->ForwardDense(mb.normed.data(), mb.tokens, mb.x.data(), pool_);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> LoadDeepseekV3(const std::string& checkpoint_dir,
                                                      const ModelOptions& options) {
  return LoadHfModel<DeepseekV3Model>(checkpoint_dir, options, "deepseek_v3");
}

}  // namespace tessera::engine
