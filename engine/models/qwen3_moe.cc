#include "engine/models/qwen3_moe.h"

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

struct Qwen3MoeLayer {
  std::vector<float> input_norm, post_attention_norm;
  std::vector<float> qkv;             // [q_dim + 2 * kv_dim, hidden]
  std::vector<float> q_norm, k_norm;  // [head_dim]
  std::vector<float> output;          // [hidden, q_dim]
  bool sparse = true;
  std::vector<float> router;              // [num_experts, hidden] when sparse.
  std::unique_ptr<MoeExperts> experts;    // Dense layers: the one MLP.
  std::unique_ptr<RoutedExperts> routed;  // Sparse layers: here or across the group.
};

// The decoder families this file loads: Qwen3-MoE, and the dense Qwen3 and Llama, which are
// the same blocks with every feed-forward block dense (Llama also without the per-head norms
// of queries and keys).
struct Family {
  const char* model_type;
  bool moe;
  bool qk_norm;
};
constexpr Family kQwen3MoeFamily{"qwen3_moe", true, true};
constexpr Family kQwen3Family{"qwen3", false, true};
constexpr Family kLlamaFamily{"llama", false, false};

class Qwen3MoeModel : public HfDecoderModel {
 public:
  Qwen3MoeModel(const ModelOptions& options, const Family& family)
      : HfDecoderModel(options), family_(family) {}

  absl::Status Load(const HfCheckpoint& checkpoint);

 private:
  void Attention(int32_t layer, MicroBatch& mb, kvcache::PagedKvCache& cache) override;
  absl::Status FeedForward(int32_t layer, MicroBatch& mb) override;

  const Family family_;
  int32_t num_experts_ = 0;
  int32_t top_k_ = 0;
  bool normalize_top_k_ = true;
  int64_t q_dim_ = 0;
  int64_t kv_dim_ = 0;
  std::vector<float> rope_inv_freq_;  // Per rotated pair (YaRN-scaled when the config says so).
  float rope_magnitude_ = 1.0f;       // On cos and sin.
  std::vector<Qwen3MoeLayer> layers_;

  // Per-step scratch, one set per lane.
  struct Scratch {
    std::vector<float> qkv, attn, delta, router_logits, route_weights;
    std::vector<int32_t> route_ids;
  };
  Scratch scratch_[2];
};

absl::Status Qwen3MoeModel::Load(const HfCheckpoint& ck) {
  config_.architecture = family_.model_type;
  config_.name = ck.directory();
  const std::string config_path = ck.directory() + "/config.json";
  for (const char* bias : {"attention_bias", "mlp_bias"}) {
    TESSERA_ASSIGN_OR_RETURN(bool has_bias, ck.Bool(bias, false));
    if (has_bias) {
      return absl::UnimplementedError(
          absl::StrCat(config_path, ": ", bias, " true is not supported"));
    }
  }
  TESSERA_ASSIGN_OR_RETURN(int64_t hidden, ck.Int("hidden_size", 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t layers, ck.Int("num_hidden_layers", 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t heads, ck.Int("num_attention_heads", 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t kv_heads, ck.Int("num_key_value_heads", 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t head_dim, ck.Int("head_dim", 2, hidden / heads));
  TESSERA_ASSIGN_OR_RETURN(int64_t vocab, ck.Int("vocab_size", 1));
  TESSERA_ASSIGN_OR_RETURN(int64_t dense_inter, ck.Int("intermediate_size", 1));
  // Dense families: no expert fields, every layer dense.
  int64_t moe_inter = dense_inter, experts = 1, top_k = 1, sparse_step = 0;
  if (family_.moe) {
    TESSERA_ASSIGN_OR_RETURN(moe_inter, ck.Int("moe_intermediate_size", 1));
    TESSERA_ASSIGN_OR_RETURN(experts, ck.Int("num_experts", 1));
    TESSERA_ASSIGN_OR_RETURN(top_k, ck.Int("num_experts_per_tok", 1));
    TESSERA_ASSIGN_OR_RETURN(sparse_step, ck.Int("decoder_sparse_step", 0, 1));
  }
  TESSERA_ASSIGN_OR_RETURN(int64_t context, ck.Int("max_position_embeddings", 1));
  TESSERA_ASSIGN_OR_RETURN(double eps, ck.Float("rms_norm_eps", 1e-6));
  TESSERA_ASSIGN_OR_RETURN(double rope_theta, ck.Float("rope_theta", 10000.0));
  TESSERA_ASSIGN_OR_RETURN(normalize_top_k_, ck.Bool("norm_topk_prob", false));
  TESSERA_ASSIGN_OR_RETURN(bool tied, ck.Bool("tie_word_embeddings", false));
  if (heads % kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": num_attention_heads ", heads,
                                                   " is not a multiple of num_key_value_heads ",
                                                   kv_heads));
  }
  if (top_k > experts) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": num_experts_per_tok ", top_k,
                                                   " exceeds num_experts ", experts));
  }
  if (head_dim > kernels::kMaxHeadDim || head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": head_dim ", head_dim, " is not an even size up to ", kernels::kMaxHeadDim));
  }
  std::vector<int64_t> mlp_only;
  if (ck.config().contains("mlp_only_layers") && ck.config()["mlp_only_layers"].is_array()) {
    for (const auto& v : ck.config()["mlp_only_layers"]) {
      if (v.is_number_integer()) mlp_only.push_back(v.get<int64_t>());
    }
  }
  config_.num_layers = static_cast<int32_t>(layers);
  config_.hidden_size = static_cast<int32_t>(hidden);
  config_.num_heads = static_cast<int32_t>(heads);
  config_.num_kv_heads = static_cast<int32_t>(kv_heads);
  config_.head_dim = static_cast<int32_t>(head_dim);
  config_.intermediate_size = static_cast<int32_t>(moe_inter);
  config_.vocab_size = static_cast<int32_t>(vocab);
  config_.context_length = static_cast<int32_t>(context);
  config_.rope_dim = static_cast<int32_t>(head_dim);
  config_.rope_base = static_cast<float>(rope_theta);
  TESSERA_ASSIGN_OR_RETURN(RopeScaling rope,
                           ReadRopeScaling(ck.config(), head_dim, rope_theta, config_path));
  rope_inv_freq_ = std::move(rope.inv_freq);
  rope_magnitude_ = rope.magnitude;
  config_.rms_norm_epsilon = static_cast<float>(eps);
  num_experts_ = static_cast<int32_t>(experts);
  top_k_ = static_cast<int32_t>(top_k);
  q_dim_ = heads * head_dim;
  kv_dim_ = kv_heads * head_dim;

  TESSERA_RETURN_IF_ERROR(LoadEmbeddingsAndHead(ck, tied));
  layers_.resize(static_cast<size_t>(layers));
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    Qwen3MoeLayer& l = layers_[static_cast<size_t>(i)];
    TESSERA_ASSIGN_OR_RETURN(l.input_norm, ck.Tensor(p + "input_layernorm.weight", {hidden}));
    TESSERA_ASSIGN_OR_RETURN(l.post_attention_norm,
                             ck.Tensor(p + "post_attention_layernorm.weight", {hidden}));
    TESSERA_ASSIGN_OR_RETURN(std::vector<float> q,
                             ck.Tensor(p + "self_attn.q_proj.weight", {q_dim_, hidden}));
    TESSERA_ASSIGN_OR_RETURN(std::vector<float> k,
                             ck.Tensor(p + "self_attn.k_proj.weight", {kv_dim_, hidden}));
    TESSERA_ASSIGN_OR_RETURN(std::vector<float> v,
                             ck.Tensor(p + "self_attn.v_proj.weight", {kv_dim_, hidden}));
    l.qkv = std::move(q);
    l.qkv.insert(l.qkv.end(), k.begin(), k.end());
    l.qkv.insert(l.qkv.end(), v.begin(), v.end());
    if (family_.qk_norm) {
      TESSERA_ASSIGN_OR_RETURN(l.q_norm, ck.Tensor(p + "self_attn.q_norm.weight", {head_dim}));
      TESSERA_ASSIGN_OR_RETURN(l.k_norm, ck.Tensor(p + "self_attn.k_norm.weight", {head_dim}));
    }
    TESSERA_ASSIGN_OR_RETURN(l.output, ck.Tensor(p + "self_attn.o_proj.weight", {hidden, q_dim_}));

    l.sparse = std::find(mlp_only.begin(), mlp_only.end(), i) == mlp_only.end() &&
               sparse_step > 0 && (i + 1) % sparse_step == 0;
    std::vector<ExpertWeights> weights;
    auto load_mlp = [&](const std::string& prefix, int64_t inter) -> absl::Status {
      TESSERA_ASSIGN_OR_RETURN(ExpertWeights w, LoadSwiGlu(ck, prefix, hidden, inter));
      weights.push_back(std::move(w));
      return absl::OkStatus();
    };
    if (l.sparse) {
      TESSERA_ASSIGN_OR_RETURN(l.router, ck.Tensor(p + "mlp.gate.weight", {experts, hidden}));
      TESSERA_ASSIGN_OR_RETURN(
          l.routed, RoutedExperts::Load(ck, p + "mlp.experts.", experts, hidden, moe_inter,
                                        expert_lanes(), moe_times(), expert_balancing()));
      routed_layers_.emplace_back(static_cast<int32_t>(i), l.routed.get());
    } else {
      TESSERA_RETURN_IF_ERROR(load_mlp(p + "mlp.", dense_inter));
      l.experts = std::make_unique<MoeExperts>(hidden, dense_inter, std::move(weights));
    }
  }
  return absl::OkStatus();
}

void Qwen3MoeModel::Attention(int32_t layer, MicroBatch& mb, kvcache::PagedKvCache& cache) {
  Scratch& s = scratch_[mb.lane];
  const Qwen3MoeLayer& w = layers_[static_cast<size_t>(layer)];
  const int64_t hidden = config_.hidden_size;
  const int64_t head_dim = config_.head_dim;
  const int64_t qkv_dim = q_dim_ + 2 * kv_dim_;
  const int32_t block_size = cache.shape().block_size;
  mb.normed.resize(static_cast<size_t>(mb.tokens * hidden));
  for (int64_t t = 0; t < mb.tokens; ++t) {
    kernels::RmsNorm(mb.x.data() + t * hidden, w.input_norm.data(), hidden,
                     config_.rms_norm_epsilon, mb.normed.data() + t * hidden);
  }
  s.qkv.resize(static_cast<size_t>(mb.tokens * qkv_dim));
  kernels::MatmulF32(w.qkv.data(), qkv_dim, hidden, mb.normed.data(), mb.tokens, s.qkv.data(),
                     qkv_dim, pool_);
  for (int64_t t = 0; t < mb.tokens; ++t) {
    float* q = s.qkv.data() + t * qkv_dim;
    float* k = q + q_dim_;
    const float* v = k + kv_dim_;
    for (int64_t h = 0; family_.qk_norm && h < config_.num_heads; ++h) {
      kernels::RmsNorm(q + h * head_dim, w.q_norm.data(), head_dim, config_.rms_norm_epsilon,
                       q + h * head_dim);
    }
    for (int64_t h = 0; family_.qk_norm && h < config_.num_kv_heads; ++h) {
      kernels::RmsNorm(k + h * head_dim, w.k_norm.data(), head_dim, config_.rms_norm_epsilon,
                       k + h * head_dim);
    }
    kernels::ApplyRopeHalves(q, config_.num_heads, head_dim, config_.rope_dim, mb.step.position[t],
                             rope_inv_freq_.data(), rope_magnitude_);
    kernels::ApplyRopeHalves(k, config_.num_kv_heads, head_dim, config_.rope_dim,
                             mb.step.position[t], rope_inv_freq_.data(), rope_magnitude_);
    const SequenceStep& seq = mb.batch[static_cast<size_t>(mb.step.sequence[t])];
    const int32_t pos = mb.step.position[t];
    const kvcache::BlockId block = seq.block_table[static_cast<size_t>(pos / block_size)];
    uint16_t* key_row = cache.keys(layer, block) + (pos % block_size) * kv_dim_;
    uint16_t* value_row = cache.values(layer, block) + (pos % block_size) * kv_dim_;
    for (int64_t i = 0; i < kv_dim_; ++i) {
      key_row[i] = kernels::Fp32ToFp16(k[i]);
      value_row[i] = kernels::Fp32ToFp16(v[i]);
    }
  }
  s.attn.resize(static_cast<size_t>(mb.tokens * q_dim_));
  const kernels::AttentionShape shape{config_.num_heads, config_.num_kv_heads, config_.head_dim,
                                      block_size,
                                      1.0f / std::sqrt(static_cast<float>(config_.head_dim))};
  int64_t row = 0;
  for (const SequenceStep& seq : mb.batch) {
    std::vector<const uint16_t*> keys, values;
    for (kvcache::BlockId b : seq.block_table) {
      keys.push_back(cache.keys(layer, b));
      values.push_back(cache.values(layer, b));
    }
    const kernels::PagedKv kv{keys.data(), values.data()};
    const int n = static_cast<int>(seq.tokens.size());
    for (int32_t h = 0; h < config_.num_kv_heads; ++h) {
      kernels::AttendTile(shape, kv, s.qkv.data() + row * qkv_dim, qkv_dim, seq.start_pos, n, h,
                          s.attn.data() + row * q_dim_, q_dim_);
    }
    row += n;
  }
  s.delta.resize(static_cast<size_t>(mb.tokens * hidden));
  kernels::MatmulF32(w.output.data(), hidden, q_dim_, s.attn.data(), mb.tokens, s.delta.data(),
                     hidden, pool_);
  for (int64_t i = 0; i < mb.tokens * hidden; ++i)
    mb.x[static_cast<size_t>(i)] += s.delta[static_cast<size_t>(i)];
}

absl::Status Qwen3MoeModel::FeedForward(int32_t layer, MicroBatch& mb) {
  Scratch& s = scratch_[mb.lane];
  Qwen3MoeLayer& w = layers_[static_cast<size_t>(layer)];
  const int64_t hidden = config_.hidden_size;
  for (int64_t t = 0; t < mb.tokens; ++t) {
    kernels::RmsNorm(mb.x.data() + t * hidden, w.post_attention_norm.data(), hidden,
                     config_.rms_norm_epsilon, mb.normed.data() + t * hidden);
  }
  if (!w.sparse) {
    w.experts->ForwardDense(mb.normed.data(), mb.tokens, mb.x.data(), pool_);
    return absl::OkStatus();
  }
  const int32_t k = top_k_;
  std::optional<PhaseTimer> routing(std::in_place, moe_times(), &MoeLayerTimes::routing_ns);
  s.router_logits.resize(static_cast<size_t>(mb.tokens * num_experts_));
  kernels::MatmulF32(w.router.data(), num_experts_, hidden, mb.normed.data(), mb.tokens,
                     s.router_logits.data(), num_experts_, pool_);
  s.route_ids.resize(static_cast<size_t>(mb.tokens * k));
  s.route_weights.resize(static_cast<size_t>(mb.tokens * k));
  for (int64_t t = 0; t < mb.tokens; ++t) {
    SoftmaxTopK(s.router_logits.data() + t * num_experts_, num_experts_, k, normalize_top_k_,
                s.route_ids.data() + t * k, s.route_weights.data() + t * k);
  }
  routing.reset();
  // The experts add their weighted outputs straight into the residual stream.
  return w.routed->Forward(mb.normed.data(), mb.tokens, s.route_ids.data(), s.route_weights.data(),
                           k, mb.x.data(), pool_, mb.lane, mb.baton);
}

// LoadHfModel constructs its model type from the options alone.
template <const Family& kFamily>
class FamilyModel final : public Qwen3MoeModel {
 public:
  explicit FamilyModel(const ModelOptions& options) : Qwen3MoeModel(options, kFamily) {}
};

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> LoadQwen3Moe(const std::string& checkpoint_dir,
                                                    const ModelOptions& options) {
  return LoadHfModel<FamilyModel<kQwen3MoeFamily>>(checkpoint_dir, options, "qwen3_moe");
}

absl::StatusOr<std::unique_ptr<Model>> LoadQwen3(const std::string& checkpoint_dir,
                                                 const ModelOptions& options) {
  return LoadHfModel<FamilyModel<kQwen3Family>>(checkpoint_dir, options, "qwen3");
}

absl::StatusOr<std::unique_ptr<Model>> LoadHfLlama(const std::string& checkpoint_dir,
                                                   const ModelOptions& options) {
  return LoadHfModel<FamilyModel<kLlamaFamily>>(checkpoint_dir, options, "llama");
}

}  // namespace tessera::engine
