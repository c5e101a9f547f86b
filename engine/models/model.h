// The interface every model architecture implements: one forward step over a batch of
// sequences of mixed lengths, some prefilling and some decoding, each reading and writing its
// KV cache through its own block table. Continuous batching, KV transfer and the KV-cache
// manager work against this interface: they decide which sequences and blocks take part in a
// step; the model only computes.
// Thread-safety: a Model is owned by one step loop; Forward() is not reentrant.
#ifndef TESSERA_ENGINE_MODELS_MODEL_H_
#define TESSERA_ENGINE_MODELS_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/thread_pool.h"
#include "kvcache/block_allocator.h"
#include "kvcache/paged_kv_cache.h"

namespace tessera::comm {
class Communicator;
}  // namespace tessera::comm

namespace tessera::engine {

class GgufFile;
struct MoeLayerTimes;

struct ModelConfig {
  std::string architecture;
  std::string name;
  int32_t num_layers = 0;
  int32_t hidden_size = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t intermediate_size = 0;
  int32_t vocab_size = 0;
  int32_t context_length = 0;
  int32_t rope_dim = 0;
  float rope_base = 10000.0f;
  float rms_norm_epsilon = 1e-5f;
};

// One sequence's part of a step: `tokens` are new tokens at positions start_pos,
// start_pos + 1, ...; the KV of positions [0, start_pos) is already in the cache.
struct SequenceStep {
  std::span<const int32_t> tokens;
  int32_t start_pos = 0;
  // Blocks covering positions [0, start_pos + tokens.size()), block_size positions each.
  std::span<const kvcache::BlockId> block_table;
  // Whether to return logits for the last new token (end of a prompt, or a decode step).
  bool want_logits = true;
};

// Tokens routed to each expert of each mixture-of-experts layer since the model was loaded,
// from this process's sequences: tokens[i * num_experts + e] for layer layers[i].
struct ExpertTokenCounts {
  int32_t num_experts = 0;
  std::vector<int32_t> layers;
  std::vector<int64_t> tokens;
};

struct ForwardOptions {
  // Called after each layer's KV has been written, with the layer index, so a transfer can
  // ship that layer while later layers compute. Runs on the step thread.
  std::function<void(int32_t layer)> on_layer_done;
};

class Model {
 public:
  virtual ~Model() = default;

  virtual const ModelConfig& config() const = 0;

  // Computes one step. Writes vocab_size logits per sequence with want_logits, in order, to
  // `logits` (which must hold that many rows). InvalidArgument names a bad token id, position
  // or block table; the cache is unchanged for sequences before the bad one.
  virtual absl::Status Forward(std::span<const SequenceStep> batch, kvcache::PagedKvCache& cache,
                               std::span<float> logits, const ForwardOptions& options = {}) = 0;

  // Empty for a model without experts. May be called from any thread while steps run.
  virtual ExpertTokenCounts expert_token_counts() const { return {}; }
};

struct ModelOptions {
  kernels::ThreadPool* pool = nullptr;  // Required; not owned.
  // Mixture-of-experts models only (optional; not owned): the expert-parallel group this rank
  // belongs to. The rank loads and runs only its share of each layer's experts, and every
  // Forward() takes part in the group's dispatch and combine, so all ranks must step
  // together (a rank with no sequences calls Forward with an empty batch).
  comm::Communicator* expert_group = nullptr;
  // Optional, with expert_group: a second communicator over the same ranks. Each step then
  // runs as two micro-batches (the sequences split in two by tokens) on two threads, the
  // second's dispatch and combine on this communicator, so that one micro-batch's
  // communication overlaps the other's compute. Every rank of the group must set it alike.
  comm::Communicator* overlap_group = nullptr;
  // With overlap_group: a step splits into two micro-batches only when it has at least this
  // many tokens on some rank of the group (the ranks agree on it with one all-reduce; a rank
  // whose own step is small then splits it too, its second micro-batch perhaps empty). Other
  // steps run as one micro-batch everywhere: splitting a small step streams every expert's
  // weights twice for little communication to hide. See docs/PERFORMANCE.md for where the two
  // cross on this host (between 128 and 256 tokens per rank).
  int32_t overlap_min_tokens = 256;
  // Dense GGUF models: run each feed-forward block as this many experts, slices of its
  // intermediate size, every one selected with weight 1 (0: the dense block). The result is
  // the dense model's, up to the order of sums; with an expert_group the experts are spread
  // over it as a MoE model's are, so a dense model exercises expert parallelism end to end.
  int32_t ffn_experts = 0;
  // Expert-parallel groups only: every `rebalance_interval` steps (0: never), rebalance each
  // MoE layer's experts over the group with `redundant_experts` extra copies per rank of the
  // hottest ones (EPLB; see ExpertBalancing). Not with overlap_group.
  int32_t redundant_experts = 0;
  int32_t rebalance_interval = 0;
  // Optional (not owned): where MoE layers add up the time of their phases.
  MoeLayerTimes* moe_times = nullptr;
};

// Builds the model that `file` describes (by general.architecture); `file` must outlive it.
absl::StatusOr<std::unique_ptr<Model>> CreateModel(const GgufFile& file,
                                                   const ModelOptions& options);

// The KV cache shape the model needs, for `num_blocks` blocks of `block_size` positions.
kvcache::KvCacheShape KvShapeFor(const ModelConfig& config, int32_t block_size, int32_t num_blocks);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_MODEL_H_
