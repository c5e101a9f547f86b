// The routed-experts block of a mixture-of-experts layer, and the routing functions that
// choose each token's experts. Each expert is a SwiGLU feed-forward network with fp32 weights.
// The block runs as route -> group tokens by expert -> run each expert on its tokens ->
// combine the weighted outputs, so that with expert parallelism the grouping becomes the
// all-to-all dispatch and the combine its reverse.
// Thread-safety: Forward() and ForwardDense() may run on several threads at once (the two
// micro-batches of a step): their scratch is per thread.
#ifndef TESSERA_ENGINE_MODELS_MOE_EXPERTS_H_
#define TESSERA_ENGINE_MODELS_MOE_EXPERTS_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/thread_pool.h"

namespace tessera::engine {

struct ExpertWeights {
  std::vector<float> gate_up;  // [2 * intermediate, hidden]: the gate rows, then the up rows.
  std::vector<float> down;     // [hidden, intermediate]
};

// Softmax over all experts' logits, the k most probable, their probabilities renormalized to
// sum to one if `normalize` (Qwen3-MoE's norm_topk_prob). Writes k ids and weights.
void SoftmaxTopK(const float* logits, int32_t num_experts, int32_t k, bool normalize, int32_t* ids,
                 float* weights);

// DeepSeek-V3's routing: sigmoid scores; the experts are split into `groups` groups, each
// scored by the sum of its two best (score + correction bias); only the `top_groups` best
// groups are eligible; the k best eligible experts by score + bias are chosen, weighted by
// their scores (without the bias), renormalized if `normalize`, times `scaling`.
void SigmoidGroupTopK(const float* logits, const float* correction_bias, int32_t num_experts,
                      int32_t groups, int32_t top_groups, int32_t k, bool normalize, float scaling,
                      int32_t* ids, float* weights);

// A set of experts one process holds (all of a layer's, or its expert-parallel share), over
// fp32 activations. Implementations: MoeExperts (fp32 weights) and QuantizedExperts (packed
// quantized weights, e.g. a GGUF model's FFN split into experts).
// Thread-safety: Forward may run on several threads at once.
class ExpertBlock {
 public:
  virtual ~ExpertBlock() = default;
  virtual int32_t num_experts() const = 0;
  // out[t] += sum over j < top_k of weights[t * top_k + j] * expert(ids[t * top_k + j])(x[t]),
  // each token's terms added in ascending expert order (so a split over ranks that adds them
  // back in that order gets the same sums).
  virtual void Forward(const float* x, int64_t tokens, const int32_t* ids, const float* weights,
                       int32_t top_k, float* out, kernels::ThreadPool& pool) = 0;
};

// The frame of ExpertBlock::Forward: groups the routed (token, weight) pairs by expert; for each
// expert with tokens, in ascending order, gathers their rows of x, has `compute` write the
// expert's n output rows to `results`, and adds them, weighted, to their tokens' rows of out.
// Scratch is per thread.
void ForEachExpertGroup(const float* x, int64_t tokens, const int32_t* ids, const float* weights,
                        int32_t top_k, int32_t num_experts, int32_t hidden, float* out,
                        const std::function<void(int32_t expert, const float* rows, int64_t n,
                                                 float* results)>& compute);

class MoeExperts final : public ExpertBlock {
 public:
  MoeExperts(int32_t hidden, int32_t intermediate, std::vector<ExpertWeights> experts);

  int32_t num_experts() const override { return static_cast<int32_t>(experts_.size()); }
  void Forward(const float* x, int64_t tokens, const int32_t* ids, const float* weights,
               int32_t top_k, float* out, kernels::ThreadPool& pool) override;
  // out[t] += expert 0 (x[t]) for every token: a dense MLP (or shared experts).
  void ForwardDense(const float* x, int64_t tokens, float* out, kernels::ThreadPool& pool);

 private:
  const int32_t hidden_;
  const int32_t intermediate_;
  std::vector<ExpertWeights> experts_;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_MOE_EXPERTS_H_
