#include "engine/sampling/sampling_params.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace tessera::engine {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  auto bad = [](absl::string_view field, absl::string_view rule, auto value) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must be ", rule, ", got ", value));
  };
  if (!std::isfinite(p.temperature) || p.temperature < 0)
    return bad("temperature", ">= 0", p.temperature);
  if (p.top_k < 0) return bad("top_k", ">= 0", p.top_k);
  if (!(p.top_p > 0 && p.top_p <= 1)) return bad("top_p", "in (0, 1]", p.top_p);
  if (!(p.min_p >= 0 && p.min_p < 1)) return bad("min_p", "in [0, 1)", p.min_p);
  if (!(p.repetition_penalty > 0) || !std::isfinite(p.repetition_penalty)) {
    return bad("repetition_penalty", "> 0", p.repetition_penalty);
  }
  if (!(std::fabs(p.frequency_penalty) <= 2))
    return bad("frequency_penalty", "in [-2, 2]", p.frequency_penalty);
  if (!(std::fabs(p.presence_penalty) <= 2))
    return bad("presence_penalty", "in [-2, 2]", p.presence_penalty);
  if (p.max_tokens < 1) return bad("max_tokens", ">= 1", p.max_tokens);
  for (size_t i = 0; i < p.stop.size(); ++i) {
    if (p.stop[i].empty())
      return absl::InvalidArgumentError(absl::StrCat("stop[", i, "] is empty"));
  }
  return absl::OkStatus();
}

}  // namespace tessera::engine
