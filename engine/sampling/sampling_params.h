// How the next token is chosen, and when generation stops. The fields and their meanings
// follow the OpenAI and vLLM APIs, so the serving edges map onto them one to one.
// Thread-compatible (plain data).
#ifndef TESSERA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
#define TESSERA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tessera::engine {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy.
  int32_t top_k = 0;         // 0 = off.
  float top_p = 1.0f;        // In (0, 1]; 1 = off.
  float min_p = 0.0f;        // In [0, 1); 0 = off.
  // > 1 discourages tokens already in the prompt or output (divides positive logits,
  // multiplies negative ones), as in vLLM and llama.cpp.
  float repetition_penalty = 1.0f;
  // Subtracted per occurrence (frequency) or once (presence) of a token in the output so far.
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  std::optional<uint64_t> seed;  // Same seed and inputs, same tokens.
  int32_t max_tokens = 256;
  std::vector<std::string> stop;  // Generation ends before the first occurrence of any.
  bool ignore_eos = false;
};

// InvalidArgument naming the first bad field, e.g. "top_p must be in (0, 1], got 1.5".
absl::Status ValidateSamplingParams(const SamplingParams& params);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
