#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>

namespace tessera::engine {

Sampler::Sampler(const SamplingParams& params, std::span<const int32_t> prompt)
    : params_(params), rng_(params.seed.has_value() ? *params.seed : std::random_device{}()) {
  if (params_.repetition_penalty != 1.0f) {
    for (int32_t t : prompt) prompt_tokens_[t] = true;
  }
}

void Sampler::Accept(int32_t token) { ++output_counts_[token]; }

void Sampler::Replay(int32_t token) {
  // Sample() draws one uniform double when it samples at all; with a 64-bit engine that is
  // exactly one engine call.
  static_assert(std::mt19937_64::word_size >= 53);
  if (params_.temperature > 0.0f) rng_.discard(1);
  Accept(token);
}

void Sampler::ApplyPenalties(std::span<float> logits) const {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  auto repeat = [&](int32_t t) {
    float& l = logits[t];
    l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
  };
  if (params_.repetition_penalty != 1.0f) {
    for (const auto& [t, unused] : prompt_tokens_) {
      if (t >= 0 && t < vocab && !output_counts_.contains(t)) repeat(t);
    }
    for (const auto& [t, count] : output_counts_) {
      if (t >= 0 && t < vocab) repeat(t);
    }
  }
  if (params_.frequency_penalty != 0.0f || params_.presence_penalty != 0.0f) {
    for (const auto& [t, count] : output_counts_) {
      if (t >= 0 && t < vocab) {
        logits[t] -=
            params_.frequency_penalty * static_cast<float>(count) + params_.presence_penalty;
      }
    }
  }
}

int32_t Sampler::Sample(std::span<float> logits) {
  ApplyPenalties(logits);
  if (params_.temperature == 0.0f) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  // Candidates sorted by logit, best first; ties broken by token id so results are stable.
  candidates_.clear();
  candidates_.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    candidates_.emplace_back(logits[i] / params_.temperature, static_cast<int32_t>(i));
  }
  auto better = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t keep = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = params_.top_k;
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), better);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), better);
  }
  candidates_.resize(keep);
  // Softmax over the kept candidates.
  const float max = candidates_[0].first;
  double total = 0.0;
  for (auto& c : candidates_) {
    c.first = std::exp(c.first - max);
    total += c.first;
  }
  // min-p: drop tokens below min_p times the top probability.
  if (params_.min_p > 0.0f) {
    float floor = params_.min_p * candidates_[0].first;
    size_t n = 1;
    while (n < candidates_.size() && candidates_[n].first >= floor) ++n;
    for (size_t i = n; i < candidates_.size(); ++i) total -= candidates_[i].first;
    candidates_.resize(n);
  }
  // top-p: the smallest prefix whose probability reaches top_p.
  if (params_.top_p < 1.0f) {
    double cumulative = 0.0;
    size_t n = 0;
    while (n < candidates_.size()) {
      cumulative += candidates_[n].first;
      ++n;
      if (cumulative >= params_.top_p * total) break;
    }
    candidates_.resize(n);
    total = cumulative;
  }
  std::uniform_real_distribution<double> uniform(0.0, total);
  double r = uniform(rng_);
  for (const auto& c : candidates_) {
    r -= c.first;
    if (r < 0) return c.second;
  }
  return candidates_.back().second;
}

}  // namespace tessera::engine
