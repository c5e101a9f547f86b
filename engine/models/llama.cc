// The Llama family (Llama 2/3, SmolLM, Mistral without sliding window, ...): RMSNorm,
// adjacent-pair RoPE, grouped-query attention, SwiGLU, optionally tied embeddings.
//
// Weights are packed at load for the integer kernels, with the Q/K/V projections fused into
// one matrix and gate/up into another, so each layer runs four matmuls over the whole batch.
// All new tokens of all sequences in the step form one matrix; only attention is per sequence.
// With ModelOptions::ffn_experts the feed-forward blocks run as that many experts instead
// (see QuantizedExperts), here or spread over an expert-parallel group.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "comm/communicator.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "engine/gguf/gguf_file.h"
#include "engine/models/expert_parallel.h"
#include "engine/models/model_registry.h"
#include "engine/models/quantized_experts.h"
#include "engine/models/step_validation.h"
#include "kernels/attention.h"
#include "kernels/dequantize.h"
#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/packed_matrix.h"
#include "kernels/quantized_activations.h"

namespace tessera::engine {
namespace {

using kernels::PackedFormat;
using kernels::PackedMatrix;
using kernels::WeightSource;

struct LayerWeights {
  std::vector<float> attn_norm;
  std::vector<float> ffn_norm;
  PackedMatrix qkv;      // [q_dim + 2 * kv_dim, hidden]
  PackedMatrix output;   // [hidden, q_dim]
  PackedMatrix gate_up;  // [2 * intermediate, hidden]
  PackedMatrix down;     // [hidden, intermediate]
  // Instead of gate_up and down when the FFN runs as experts.
  std::unique_ptr<RoutedExperts> experts;
};

// Reads tensors by name and checks their shapes, naming the tensor in every error.
class WeightReader {
 public:
  explicit WeightReader(const GgufFile& file) : file_(file) {}

  const std::string& source_name() const { return file_.source_name(); }

  absl::StatusOr<const GgufTensor*> Get(const std::string& name, std::vector<int64_t> shape) const {
    const GgufTensor* t = file_.FindTensor(name);
    if (t == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_.source_name(), ": tensor '", name, "' is missing"));
    }
    if (t->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          file_.source_name(), ": tensor '", name, "' has shape [", absl::StrJoin(t->shape, ", "),
          "], expected [", absl::StrJoin(shape, ", "), "]"));
    }
    return t;
  }

  absl::StatusOr<std::vector<float>> Vector(const std::string& name, int64_t n) const {
    TESSERA_ASSIGN_OR_RETURN(const GgufTensor* t, Get(name, {n}));
    std::vector<float> v(n);
    kernels::DequantizeRow(t->type, t->data.data(), n, v.data());
    return v;
  }

  // Packs the named [rows_i, cols] tensors on top of each other.
  absl::StatusOr<PackedMatrix> Matrix(const std::vector<std::pair<std::string, int64_t>>& parts,
                                      int64_t cols) const {
    std::vector<WeightSource> sources;
    for (const auto& [name, rows] : parts) {
      TESSERA_ASSIGN_OR_RETURN(const GgufTensor* t, Get(name, {cols, rows}));
      sources.push_back({t->type, t->data, rows});
    }
    absl::StatusOr<PackedMatrix> packed = PackedMatrix::Pack(sources, cols);
    if (!packed.ok()) {
      return absl::Status(packed.status().code(),
                          absl::StrCat(file_.source_name(), ": tensor '", parts[0].first,
                                       "': ", packed.status().message()));
    }
    return packed;
  }

 private:
  const GgufFile& file_;
};

absl::StatusOr<int32_t> PositiveInt(const GgufFile& file, const std::string& key, int64_t limit) {
  TESSERA_ASSIGN_OR_RETURN(int64_t v, file.GetInt(key));
  if (v <= 0 || v > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.source_name(), ": ", key, " = ", v, " is outside 1..", limit));
  }
  return static_cast<int32_t>(v);
}

class LlamaModel final : public Model {
 public:
  static absl::StatusOr<std::unique_ptr<Model>> Create(const GgufFile& file,
                                                       const ModelOptions& options) {
    if (options.overlap_group != nullptr) {
      return absl::InvalidArgumentError("llama models do not split steps into micro-batches");
    }
    if (options.expert_group != nullptr && options.ffn_experts <= 0) {
      return absl::InvalidArgumentError(
          "a dense model in an expert-parallel group needs ModelOptions.ffn_experts");
    }
    auto model = std::unique_ptr<LlamaModel>(new LlamaModel(options));
    TESSERA_RETURN_IF_ERROR(model->Load(file));
    return std::unique_ptr<Model>(std::move(model));
  }

  const ModelConfig& config() const override { return config_; }

  absl::Status Forward(std::span<const SequenceStep> batch, kvcache::PagedKvCache& cache,
                       std::span<float> logits, const ForwardOptions& options) override;
  ExpertTokenCounts expert_token_counts() const override {
    return CollectExpertTokenCounts(routed_layers_);
  }

 private:
  explicit LlamaModel(const ModelOptions& options)
      : pool_(*options.pool), ffn_experts_(options.ffn_experts), moe_times_(options.moe_times) {
    if (options.expert_group != nullptr) expert_lanes_.push_back(options.expert_group);
  }
  absl::Status Load(const GgufFile& file);
  void Embed(int32_t token, float* out) const;
  absl::Status LoadFfnExperts(const WeightReader& reader, const std::string& prefix,
                              LayerWeights& layer);
  absl::Status Layer(int32_t layer, std::span<const SequenceStep> batch,
                     kvcache::PagedKvCache& cache);
  // The feed-forward block as experts: every token to all of them, weight 1.
  absl::Status FfnExperts(const LayerWeights& w);
  // normed_ = RmsNorm(x_) with `weight`, quantized into quantized_, row by row in parallel.
  // With `add_residual`, first x_ += normed_ (the previous block's output, left there): one
  // parallel pass instead of two, since a decode step is hundreds of short passes.
  void NormAndQuantize(const std::vector<float>& weight, bool add_residual);
  // Per-token passes in chunks of this many tokens: at least a few chunks per thread even for
  // a decode step's handful of tokens, so no thread waits while another does them all.
  // Row t of x_ += row t of normed_ (a block's output joining the residual stream).
  void AddResidualRow(int64_t t) {
    const int64_t hidden = config_.hidden_size;
    for (int64_t i = t * hidden; i < (t + 1) * hidden; ++i) x_[i] += normed_[i];
  }
  int64_t TokenGrain() const {
    return std::clamp<int64_t>(tokens_ / (4 * pool_.num_threads()), 1, 16);
  }

  kernels::ThreadPool& pool_;
  const int32_t ffn_experts_;
  MoeLayerTimes* const moe_times_;
  const ExpertBalancing balancing_;
  std::vector<comm::Communicator*> expert_lanes_;
  std::vector<std::pair<int32_t, const RoutedExperts*>> routed_layers_;
  ModelConfig config_;
  int64_t q_dim_ = 0;
  int64_t kv_dim_ = 0;
  const GgufTensor* token_embedding_ = nullptr;
  std::vector<LayerWeights> layers_;
  std::vector<float> output_norm_;
  std::vector<float> rope_inv_freq_;  // Computed once, not per token and layer.
  PackedMatrix lm_head_;

  // Per-step scratch, sized for the largest step seen so far.
  int64_t tokens_ = 0;
  std::vector<float> x_, normed_, qkv_, attn_, gate_up_, ffn_;
  std::vector<int32_t> token_seq_, token_pos_;
  std::vector<float> ffn_out_, expert_weights_;  // FFN as experts.
  std::vector<int32_t> expert_ids_;
  kernels::QuantizedActivations quantized_;
};

absl::Status LlamaModel::Load(const GgufFile& file) {
  const std::string& arch = "llama";
  config_.architecture = arch;
  config_.name = file.GetString("general.name").value_or("llama");
  constexpr int64_t kLimit = 1 << 20;
  TESSERA_ASSIGN_OR_RETURN(config_.num_layers, PositiveInt(file, arch + ".block_count", 1024));
  TESSERA_ASSIGN_OR_RETURN(config_.hidden_size,
                           PositiveInt(file, arch + ".embedding_length", kLimit));
  TESSERA_ASSIGN_OR_RETURN(config_.num_heads,
                           PositiveInt(file, arch + ".attention.head_count", 4096));
  config_.num_kv_heads = config_.num_heads;
  if (file.Has(arch + ".attention.head_count_kv")) {
    TESSERA_ASSIGN_OR_RETURN(config_.num_kv_heads,
                             PositiveInt(file, arch + ".attention.head_count_kv", 4096));
  }
  TESSERA_ASSIGN_OR_RETURN(config_.intermediate_size,
                           PositiveInt(file, arch + ".feed_forward_length", kLimit));
  TESSERA_ASSIGN_OR_RETURN(config_.context_length,
                           PositiveInt(file, arch + ".context_length", kLimit));
  const std::string where = file.source_name() + ": ";
  if (config_.hidden_size % config_.num_heads != 0 ||
      config_.num_heads % config_.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "head counts ", config_.num_heads, "/", config_.num_kv_heads,
                     " do not divide embedding_length ", config_.hidden_size));
  }
  config_.head_dim = config_.hidden_size / config_.num_heads;
  if (config_.head_dim > kernels::kMaxHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat(where, "head dimension ", config_.head_dim,
                                                   " exceeds ", kernels::kMaxHeadDim));
  }
  config_.rope_dim = config_.head_dim;
  if (file.Has(arch + ".rope.dimension_count")) {
    TESSERA_ASSIGN_OR_RETURN(config_.rope_dim,
                             PositiveInt(file, arch + ".rope.dimension_count", config_.head_dim));
  }
  if (config_.rope_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "rope.dimension_count ", config_.rope_dim, " is odd"));
  }
  if (file.Has(arch + ".rope.freq_base")) {
    TESSERA_ASSIGN_OR_RETURN(double base, file.GetFloat(arch + ".rope.freq_base"));
    config_.rope_base = static_cast<float>(base);
  }
  rope_inv_freq_ = kernels::RopeFrequencies(config_.rope_dim, config_.rope_base);
  TESSERA_ASSIGN_OR_RETURN(double eps, file.GetFloat(arch + ".attention.layer_norm_rms_epsilon"));
  config_.rms_norm_epsilon = static_cast<float>(eps);
  if (!(config_.rope_base > 0) || !(config_.rms_norm_epsilon > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "rope.freq_base and layer_norm_rms_epsilon must be positive"));
  }

  WeightReader reader(file);
  const int64_t hidden = config_.hidden_size;
  q_dim_ = int64_t{config_.num_heads} * config_.head_dim;
  kv_dim_ = int64_t{config_.num_kv_heads} * config_.head_dim;
  const GgufTensor* embd = file.FindTensor("token_embd.weight");
  if (embd == nullptr || embd->shape.size() != 2 || embd->shape[0] != hidden) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "token_embd.weight is missing or not [", hidden, ", vocab]"));
  }
  config_.vocab_size = static_cast<int32_t>(embd->shape[1]);
  token_embedding_ = embd;
  const std::string head_name =
      file.FindTensor("output.weight") != nullptr ? "output.weight" : "token_embd.weight";
  TESSERA_ASSIGN_OR_RETURN(lm_head_, reader.Matrix({{head_name, config_.vocab_size}}, hidden));
  TESSERA_ASSIGN_OR_RETURN(output_norm_, reader.Vector("output_norm.weight", hidden));

  layers_.resize(config_.num_layers);
  for (int32_t i = 0; i < config_.num_layers; ++i) {
    const std::string p = absl::StrCat("blk.", i, ".");
    LayerWeights& l = layers_[i];
    TESSERA_ASSIGN_OR_RETURN(l.attn_norm, reader.Vector(p + "attn_norm.weight", hidden));
    TESSERA_ASSIGN_OR_RETURN(l.ffn_norm, reader.Vector(p + "ffn_norm.weight", hidden));
    TESSERA_ASSIGN_OR_RETURN(l.qkv, reader.Matrix({{p + "attn_q.weight", q_dim_},
                                                   {p + "attn_k.weight", kv_dim_},
                                                   {p + "attn_v.weight", kv_dim_}},
                                                  hidden));
    TESSERA_ASSIGN_OR_RETURN(l.output, reader.Matrix({{p + "attn_output.weight", hidden}}, q_dim_));
    if (ffn_experts_ > 0) {
      TESSERA_RETURN_IF_ERROR(LoadFfnExperts(reader, p, l));
      continue;
    }
    TESSERA_ASSIGN_OR_RETURN(l.gate_up,
                             reader.Matrix({{p + "ffn_gate.weight", config_.intermediate_size},
                                            {p + "ffn_up.weight", config_.intermediate_size}},
                                           hidden));
    TESSERA_ASSIGN_OR_RETURN(
        l.down, reader.Matrix({{p + "ffn_down.weight", hidden}}, config_.intermediate_size));
  }
  // Unquantized matrices (F32, F16, BF16 in the file) are packed as bf16 and multiply the
  // activations' bf16 copy, which costs a conversion per row: only kept when some need it.
  bool bf16 = lm_head_.format() == PackedFormat::kBf16;
  for (const LayerWeights& l : layers_) {
    for (const PackedMatrix* m : {&l.qkv, &l.output, &l.gate_up, &l.down}) {
      bf16 = bf16 || (m->rows() > 0 && m->format() == PackedFormat::kBf16);
    }
  }
  quantized_.set_keep_bf16(bf16);
  return absl::OkStatus();
}

absl::Status LlamaModel::LoadFfnExperts(const WeightReader& reader, const std::string& prefix,
                                        LayerWeights& layer) {
  const int64_t hidden = config_.hidden_size;
  const int64_t inter = config_.intermediate_size;
  TESSERA_ASSIGN_OR_RETURN(const GgufTensor* gate,
                           reader.Get(prefix + "ffn_gate.weight", {hidden, inter}));
  TESSERA_ASSIGN_OR_RETURN(const GgufTensor* up,
                           reader.Get(prefix + "ffn_up.weight", {hidden, inter}));
  TESSERA_ASSIGN_OR_RETURN(const GgufTensor* down,
                           reader.Get(prefix + "ffn_down.weight", {inter, hidden}));
  const int ranks = expert_lanes_.empty() ? 1 : expert_lanes_[0]->size();
  if (ffn_experts_ % ranks != 0) {
    return absl::InvalidArgumentError(absl::StrCat("ffn_experts ", ffn_experts_,
                                                   " cannot be split evenly over ", ranks,
                                                   " expert-parallel ranks"));
  }
  const int32_t slice = static_cast<int32_t>(inter / ffn_experts_);
  ExpertFactory factory =
      [gate, up, down, experts = ffn_experts_, hidden,
       slice](std::span<const int32_t> ids) -> absl::StatusOr<std::unique_ptr<ExpertBlock>> {
    std::vector<QuantizedExpert> chosen;
    for (int32_t e : ids) {
      TESSERA_ASSIGN_OR_RETURN(std::vector<QuantizedExpert> one,
                               SplitDenseFfn(*gate, *up, *down, experts, e, 1));
      chosen.push_back(std::move(one[0]));
    }
    return std::make_unique<QuantizedExperts>(static_cast<int32_t>(hidden), slice,
                                              std::move(chosen));
  };
  // Checked here for a message that names the file and tensor.
  if (absl::Status split = SplitDenseFfn(*gate, *up, *down, ffn_experts_, 0, 0).status();
      !split.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(reader.source_name(), ": ", split.message()));
  }
  TESSERA_ASSIGN_OR_RETURN(
      layer.experts,
      RoutedExperts::Create(std::move(factory), ffn_experts_, static_cast<int32_t>(hidden),
                            expert_lanes_, moe_times_, balancing_));
  routed_layers_.emplace_back(static_cast<int32_t>(&layer - layers_.data()), layer.experts.get());
  return absl::OkStatus();
}

void LlamaModel::Embed(int32_t token, float* out) const {
  const int64_t hidden = config_.hidden_size;
  const int64_t row_bytes = kernels::RowBytes(token_embedding_->type, hidden);
  kernels::DequantizeRow(token_embedding_->type, token_embedding_->data.data() + token * row_bytes,
                         hidden, out);
}

absl::Status LlamaModel::Forward(std::span<const SequenceStep> batch, kvcache::PagedKvCache& cache,
                                 std::span<float> logits, const ForwardOptions& options) {
  TESSERA_RETURN_IF_ERROR(ValidateStep(config_, batch, cache, logits));
  const int64_t hidden = config_.hidden_size;
  tokens_ = 0;
  token_seq_.clear();
  token_pos_.clear();
  for (size_t s = 0; s < batch.size(); ++s) {
    for (size_t i = 0; i < batch[s].tokens.size(); ++i) {
      token_seq_.push_back(static_cast<int32_t>(s));
      token_pos_.push_back(batch[s].start_pos + static_cast<int32_t>(i));
    }
    tokens_ += static_cast<int64_t>(batch[s].tokens.size());
  }
  x_.resize(tokens_ * hidden);
  normed_.resize(tokens_ * hidden);
  qkv_.resize(tokens_ * (q_dim_ + 2 * kv_dim_));
  attn_.resize(tokens_ * q_dim_);
  gate_up_.resize(tokens_ * 2 * config_.intermediate_size);
  ffn_.resize(tokens_ * config_.intermediate_size);

  int64_t t = 0;
  for (const SequenceStep& seq : batch) {
    for (int32_t token : seq.tokens) Embed(token, x_.data() + (t++) * hidden);
  }
  for (int32_t layer = 0; layer < config_.num_layers; ++layer) {
    TESSERA_RETURN_IF_ERROR(Layer(layer, batch, cache));
    if (options.on_layer_done) options.on_layer_done(layer);
  }

  // Logits only for the last token of the sequences that want them.
  std::vector<int64_t> rows;
  t = 0;
  for (const SequenceStep& seq : batch) {
    t += static_cast<int64_t>(seq.tokens.size());
    if (seq.want_logits) rows.push_back(t - 1);
  }
  if (rows.empty()) return absl::OkStatus();
  // The last layer's FFN output joins the residual stream, for these rows only. All of them
  // first: row i of normed_ is overwritten below while later rows' outputs are still needed.
  for (int64_t row : rows) AddResidualRow(row);
  for (size_t i = 0; i < rows.size(); ++i) {
    kernels::RmsNorm(x_.data() + rows[i] * hidden, output_norm_.data(), hidden,
                     config_.rms_norm_epsilon, normed_.data() + i * hidden);
  }
  quantized_.Quantize(normed_.data(), static_cast<int64_t>(rows.size()), hidden, hidden);
  kernels::Matmul(lm_head_, quantized_, logits.data(), config_.vocab_size, pool_);
  return absl::OkStatus();
}

absl::Status LlamaModel::Layer(int32_t layer, std::span<const SequenceStep> batch,
                               kvcache::PagedKvCache& cache) {
  const LayerWeights& w = layers_[layer];
  const int64_t hidden = config_.hidden_size;
  const int64_t qkv_dim = q_dim_ + 2 * kv_dim_;
  const int64_t ffn = config_.intermediate_size;
  const int32_t block_size = cache.shape().block_size;

  // Attention block.
  // Layer 0 starts from the embeddings; every later layer adds the previous FFN's output.
  NormAndQuantize(w.attn_norm, /*add_residual=*/layer > 0);
  kernels::Matmul(w.qkv, quantized_, qkv_.data(), qkv_dim, pool_);
  pool_.ParallelFor(tokens_, TokenGrain(), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* q = qkv_.data() + t * qkv_dim;
      float* k = q + q_dim_;
      const float* v = k + kv_dim_;
      kernels::ApplyRope(q, config_.num_heads, config_.head_dim, config_.rope_dim, token_pos_[t],
                         rope_inv_freq_.data(), 1.0f);
      kernels::ApplyRope(k, config_.num_kv_heads, config_.head_dim, config_.rope_dim, token_pos_[t],
                         rope_inv_freq_.data(), 1.0f);
      const SequenceStep& seq = batch[token_seq_[t]];
      int32_t pos = token_pos_[t];
      kvcache::BlockId block = seq.block_table[pos / block_size];
      uint16_t* key_row = cache.keys(layer, block) + (pos % block_size) * kv_dim_;
      uint16_t* value_row = cache.values(layer, block) + (pos % block_size) * kv_dim_;
      for (int64_t i = 0; i < kv_dim_; ++i) {
        key_row[i] = kernels::Fp32ToFp16(k[i]);
        value_row[i] = kernels::Fp32ToFp16(v[i]);
      }
    }
  });

  // Each sequence's block table resolved to this layer's block pointers.
  std::vector<std::vector<const uint16_t*>> key_ptrs(batch.size()), value_ptrs(batch.size());
  for (size_t s = 0; s < batch.size(); ++s) {
    for (kvcache::BlockId b : batch[s].block_table) {
      key_ptrs[s].push_back(cache.keys(layer, b));
      value_ptrs[s].push_back(cache.values(layer, b));
    }
  }
  kernels::AttentionShape shape{config_.num_heads, config_.num_kv_heads, config_.head_dim,
                                block_size, 1.0f / std::sqrt(static_cast<float>(config_.head_dim))};
  // Work units: a tile of up to kQueryTile consecutive tokens of one sequence, for one kv head.
  constexpr int kQueryTile = 16;
  struct Unit {
    int32_t seq;
    int32_t kv_head;
    int64_t first_token;  // Index into this step's token rows.
    int32_t tokens;
  };
  std::vector<Unit> units;
  int64_t row = 0;
  for (size_t sidx = 0; sidx < batch.size(); ++sidx) {
    const int64_t n = static_cast<int64_t>(batch[sidx].tokens.size());
    for (int64_t begin = 0; begin < n; begin += kQueryTile) {
      for (int32_t h = 0; h < config_.num_kv_heads; ++h) {
        units.push_back({static_cast<int32_t>(sidx), h, row + begin,
                         static_cast<int32_t>(std::min<int64_t>(kQueryTile, n - begin))});
      }
    }
    row += n;
  }
  pool_.ParallelFor(static_cast<int64_t>(units.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Unit& u = units[i];
      kernels::PagedKv kv{key_ptrs[u.seq].data(), value_ptrs[u.seq].data()};
      kernels::AttendTile(shape, kv, qkv_.data() + u.first_token * qkv_dim, qkv_dim,
                          token_pos_[u.first_token], u.tokens, u.kv_head,
                          attn_.data() + u.first_token * q_dim_, q_dim_);
    }
  });
  quantized_.Reset(tokens_, q_dim_);
  pool_.ParallelFor(tokens_, TokenGrain(), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) quantized_.QuantizeRow(t, attn_.data() + t * q_dim_);
  });
  kernels::Matmul(w.output, quantized_, normed_.data(), hidden, pool_);

  // Feed-forward block, after the attention output joins the residual stream.
  NormAndQuantize(w.ffn_norm, /*add_residual=*/true);
  if (w.experts != nullptr) return FfnExperts(w);
  kernels::Matmul(w.gate_up, quantized_, gate_up_.data(), 2 * ffn, pool_);
  quantized_.Reset(tokens_, ffn);
  pool_.ParallelFor(tokens_, TokenGrain(), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* gate = gate_up_.data() + t * 2 * ffn;
      kernels::SiluMul(gate, gate + ffn, ffn, ffn_.data() + t * ffn);
      quantized_.QuantizeRow(t, ffn_.data() + t * ffn);
    }
  });
  // normed_ holds the FFN output; the next layer's norm (or the logits) adds it to x_.
  kernels::Matmul(w.down, quantized_, normed_.data(), hidden, pool_);
  return absl::OkStatus();
}

absl::Status LlamaModel::FfnExperts(const LayerWeights& w) {
  const int64_t hidden = config_.hidden_size;
  const size_t routes = static_cast<size_t>(tokens_ * ffn_experts_);
  if (expert_ids_.size() != routes) {
    expert_ids_.resize(routes);
    for (size_t i = 0; i < routes; ++i) expert_ids_[i] = static_cast<int32_t>(i % ffn_experts_);
    expert_weights_.assign(routes, 1.0f);
  }
  ffn_out_.assign(static_cast<size_t>(tokens_ * hidden), 0.0f);
  TESSERA_RETURN_IF_ERROR(w.experts->Forward(normed_.data(), tokens_, expert_ids_.data(),
                                             expert_weights_.data(), ffn_experts_, ffn_out_.data(),
                                             pool_));
  // Left in normed_ for the next layer's norm (or the logits) to add to x_.
  std::copy(ffn_out_.begin(), ffn_out_.end(), normed_.begin());
  return absl::OkStatus();
}

void LlamaModel::NormAndQuantize(const std::vector<float>& weight, bool add_residual) {
  const int64_t hidden = config_.hidden_size;
  quantized_.Reset(tokens_, hidden);
  pool_.ParallelFor(tokens_, TokenGrain(), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      if (add_residual) AddResidualRow(t);
      kernels::RmsNorm(x_.data() + t * hidden, weight.data(), hidden, config_.rms_norm_epsilon,
                       normed_.data() + t * hidden);
      quantized_.QuantizeRow(t, normed_.data() + t * hidden);
    }
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> CreateLlamaModel(const GgufFile& file,
                                                        const ModelOptions& options) {
  return LlamaModel::Create(file, options);
}

}  // namespace tessera::engine
