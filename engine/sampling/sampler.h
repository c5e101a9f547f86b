// Chooses each next token from the logits: penalties, then greedy or temperature sampling with
// top-k, top-p and min-p filtering, from a seeded generator owned by the sequence.
// Not thread-safe: one Sampler per sequence, used by the step loop.
#ifndef TESSERA_ENGINE_SAMPLING_SAMPLER_H_
#define TESSERA_ENGINE_SAMPLING_SAMPLER_H_

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/sampling/sampling_params.h"

namespace tessera::engine {

class Sampler {
 public:
  // Precondition: ValidateSamplingParams(params).ok().
  Sampler(const SamplingParams& params, std::span<const int32_t> prompt);

  // Picks the next token; `logits` (vocab-sized) is used as scratch and modified.
  int32_t Sample(std::span<float> logits);
  // Records a generated token, for the penalties.
  void Accept(int32_t token);
  // Records a token that an earlier run of this request sampled (a resumed or handed-off
  // request): advances the generator exactly as Sample() did, then Accept()s it, so the
  // following samples match an uninterrupted run.
  void Replay(int32_t token);

 private:
  void ApplyPenalties(std::span<float> logits) const;

  SamplingParams params_;
  std::mt19937_64 rng_;
  absl::flat_hash_map<int32_t, int32_t> output_counts_;
  absl::flat_hash_map<int32_t, bool> prompt_tokens_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_SAMPLING_SAMPLER_H_
