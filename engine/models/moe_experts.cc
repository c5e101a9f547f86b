#include "engine/models/moe_experts.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "kernels/matmul_f32.h"
#include "kernels/ops.h"

namespace tessera::engine {

void SoftmaxTopK(const float* logits, int32_t num_experts, int32_t k, bool normalize, int32_t* ids,
                 float* weights) {
  std::vector<float> probs(logits, logits + num_experts);
  kernels::Softmax(probs.data(), num_experts);
  std::vector<int32_t> order(static_cast<size_t>(num_experts));
  std::iota(order.begin(), order.end(), 0);
  // Highest first; among equals the lower id, as torch.topk does in practice.
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
  });
  float sum = 0.0f;
  for (int32_t j = 0; j < k; ++j) {
    ids[j] = order[j];
    weights[j] = probs[order[j]];
    sum += weights[j];
  }
  if (normalize) {
    for (int32_t j = 0; j < k; ++j) weights[j] /= sum;
  }
}

void SigmoidGroupTopK(const float* logits, const float* correction_bias, int32_t num_experts,
                      int32_t groups, int32_t top_groups, int32_t k, bool normalize, float scaling,
                      int32_t* ids, float* weights) {
  std::vector<float> scores(static_cast<size_t>(num_experts));
  std::vector<float> choice(static_cast<size_t>(num_experts));
  for (int32_t e = 0; e < num_experts; ++e) {
    scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));
    choice[e] = scores[e] + correction_bias[e];
  }
  const int32_t per_group = num_experts / groups;
  std::vector<float> group_score(static_cast<size_t>(groups));
  for (int32_t g = 0; g < groups; ++g) {
    float best = -INFINITY, second = -INFINITY;
    for (int32_t e = g * per_group; e < (g + 1) * per_group; ++e) {
      if (choice[e] > best) {
        second = best;
        best = choice[e];
      } else if (choice[e] > second) {
        second = choice[e];
      }
    }
    group_score[g] = best + (per_group > 1 ? second : 0.0f);
  }
  std::vector<int32_t> group_order(static_cast<size_t>(groups));
  std::iota(group_order.begin(), group_order.end(), 0);
  std::partial_sort(group_order.begin(), group_order.begin() + top_groups, group_order.end(),
                    [&](int32_t a, int32_t b) {
                      return group_score[a] > group_score[b] ||
                             (group_score[a] == group_score[b] && a < b);
                    });
  std::vector<int32_t> eligible;
  for (int32_t i = 0; i < top_groups; ++i) {
    for (int32_t e = group_order[i] * per_group; e < (group_order[i] + 1) * per_group; ++e) {
      eligible.push_back(e);
    }
  }
  std::partial_sort(eligible.begin(), eligible.begin() + k, eligible.end(),
                    [&](int32_t a, int32_t b) {
                      return choice[a] > choice[b] || (choice[a] == choice[b] && a < b);
                    });
  float sum = 0.0f;
  for (int32_t j = 0; j < k; ++j) {
    ids[j] = eligible[j];
    weights[j] = scores[eligible[j]];
    sum += weights[j];
  }
  for (int32_t j = 0; j < k; ++j) {
    if (normalize) weights[j] /= sum + 1e-20f;
    weights[j] *= scaling;
  }
}

namespace {

// Per thread, shared by every layer's block (a thread runs one at a time).
struct GroupScratch {
  std::vector<std::vector<std::pair<int64_t, float>>> assigned;  // Per expert: (token, weight).
  std::vector<float> gathered, results;
};
thread_local GroupScratch group_scratch;

struct Scratch {
  std::vector<float> gate_up, activated;
  std::vector<int32_t> dense_ids;
  std::vector<float> dense_weights;
};
thread_local Scratch scratch;

}  // namespace

void ForEachExpertGroup(const float* x, int64_t tokens, const int32_t* ids, const float* weights,
                        int32_t top_k, int32_t num_experts, int32_t hidden, float* out,
                        const std::function<void(int32_t expert, const float* rows, int64_t n,
                                                 float* results)>& compute) {
  GroupScratch& s = group_scratch;
  s.assigned.resize(static_cast<size_t>(num_experts));
  for (auto& a : s.assigned) a.clear();
  for (int64_t t = 0; t < tokens; ++t) {
    for (int32_t j = 0; j < top_k; ++j) {
      s.assigned[static_cast<size_t>(ids[t * top_k + j])].emplace_back(t, weights[t * top_k + j]);
    }
  }
  for (int32_t e = 0; e < num_experts; ++e) {
    const auto& mine = s.assigned[static_cast<size_t>(e)];
    if (mine.empty()) continue;
    const int64_t n = static_cast<int64_t>(mine.size());
    s.gathered.resize(static_cast<size_t>(n * hidden));
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(s.gathered.data() + i * hidden, x + mine[i].first * hidden,
                  sizeof(float) * hidden);
    }
    s.results.resize(static_cast<size_t>(n * hidden));
    compute(e, s.gathered.data(), n, s.results.data());
    for (int64_t i = 0; i < n; ++i) {
      float* dst = out + mine[i].first * hidden;
      const float* src = s.results.data() + i * hidden;
      const float w = mine[i].second;
      for (int32_t h = 0; h < hidden; ++h) dst[h] += w * src[h];
    }
  }
}

MoeExperts::MoeExperts(int32_t hidden, int32_t intermediate, std::vector<ExpertWeights> experts)
    : hidden_(hidden), intermediate_(intermediate), experts_(std::move(experts)) {}

void MoeExperts::Forward(const float* x, int64_t tokens, const int32_t* ids, const float* weights,
                         int32_t top_k, float* out, kernels::ThreadPool& pool) {
  const int64_t inter = intermediate_;
  ForEachExpertGroup(x, tokens, ids, weights, top_k, num_experts(), hidden_, out,
                     [&](int32_t e, const float* rows, int64_t n, float* results) {
                       scratch.gate_up.resize(static_cast<size_t>(n * 2 * inter));
                       kernels::MatmulF32(experts_[e].gate_up.data(), 2 * inter, hidden_, rows, n,
                                          scratch.gate_up.data(), 2 * inter, pool);
                       scratch.activated.resize(static_cast<size_t>(n * inter));
                       kernels::SiluMulRows(scratch.gate_up.data(), n, inter,
                                            scratch.activated.data());
                       kernels::MatmulF32(experts_[e].down.data(), hidden_, inter,
                                          scratch.activated.data(), n, results, hidden_, pool);
                     });
}

void MoeExperts::ForwardDense(const float* x, int64_t tokens, float* out,
                              kernels::ThreadPool& pool) {
  scratch.dense_ids.assign(static_cast<size_t>(tokens), 0);
  scratch.dense_weights.assign(static_cast<size_t>(tokens), 1.0f);
  Forward(x, tokens, scratch.dense_ids.data(), scratch.dense_weights.data(), 1, out, pool);
}

}  // namespace tessera::engine
