#include "engine/models/rope_scaling.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"

namespace tessera::engine {
namespace {

// A number field of `params`, or `fallback` when absent or null (transformers treats a null or
// zero beta as its default, hence `zero_is_absent`).
absl::StatusOr<double> Number(const nlohmann::json& params, const char* key, double fallback,
                              const std::string& where, bool zero_is_absent = false) {
  auto it = params.find(key);
  if (it == params.end() || it->is_null()) return fallback;
  if (!it->is_number()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".", key, " must be a number"));
  }
  const double v = it->get<double>();
  if (zero_is_absent && v == 0.0) return fallback;
  if (!std::isfinite(v)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".", key, " must be finite"));
  }
  return v;
}

double CorrectionDim(double rotations, int64_t dim, double base, double max_positions) {
  return static_cast<double>(dim) * std::log(max_positions / (rotations * 2 * std::numbers::pi)) /
         (2 * std::log(base));
}

}  // namespace

double YarnMscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

absl::StatusOr<RopeScaling> ReadRopeScaling(const nlohmann::json& config, int64_t rope_dim,
                                            double base, const std::string& config_path) {
  const nlohmann::json* params = nullptr;
  std::string where;
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    auto it = config.find(key);
    if (it != config.end() && !it->is_null()) {
      params = &*it;
      where = absl::StrCat(config_path, ": ", key);
      break;
    }
  }
  RopeScaling out;
  std::string type = "default";
  if (params != nullptr) {
    if (!params->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, " must be an object"));
    }
    for (const char* key : {"rope_type", "type"}) {
      auto it = params->find(key);
      if (it != params->end() && it->is_string()) {
        type = it->get<std::string>();
        break;
      }
    }
    absl::StatusOr<double> theta = Number(*params, "rope_theta", base, where);
    if (!theta.ok()) return theta.status();
    base = *theta;
  }
  if (!(base > 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": rope_theta must be > 1"));
  }
  const int64_t pairs = rope_dim / 2;
  out.inv_freq.resize(static_cast<size_t>(pairs));
  // pos_freqs = base ** (arange(0, dim, 2) / dim), in fp32 as transformers has it.
  std::vector<float> pos_freqs(static_cast<size_t>(pairs));
  for (int64_t i = 0; i < pairs; ++i) {
    pos_freqs[i] = static_cast<float>(
        std::pow(base, static_cast<double>(static_cast<float>(2 * i) / static_cast<float>(rope_dim))));
  }
  if (type == "default") {
    for (int64_t i = 0; i < pairs; ++i) out.inv_freq[i] = 1.0f / pos_freqs[i];
    return out;
  }
  if (type != "yarn") {
    return absl::UnimplementedError(
        absl::StrCat(where, ": rope type \"", type, "\" is not supported (default, yarn)"));
  }
  out.yarn = true;
  const auto max_positions = config.find("max_position_embeddings");
  const double max_position_embeddings =
      max_positions != config.end() && max_positions->is_number() ? max_positions->get<double>()
                                                                  : 0.0;
  absl::StatusOr<double> original =
      Number(*params, "original_max_position_embeddings", max_position_embeddings, where);
  if (!original.ok()) return original.status();
  if (!(*original > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".original_max_position_embeddings must be > 0"));
  }
  absl::StatusOr<double> factor =
      Number(*params, "factor", max_position_embeddings / *original, where);
  absl::StatusOr<double> beta_fast = Number(*params, "beta_fast", 32, where, true);
  absl::StatusOr<double> beta_slow = Number(*params, "beta_slow", 1, where, true);
  absl::StatusOr<double> mscale = Number(*params, "mscale", 0, where);
  absl::StatusOr<double> mscale_all_dim = Number(*params, "mscale_all_dim", 0, where);
  absl::StatusOr<double> attention_factor = Number(*params, "attention_factor", -1, where);
  for (const absl::StatusOr<double>* v :
       {&factor, &beta_fast, &beta_slow, &mscale, &mscale_all_dim, &attention_factor}) {
    if (!v->ok()) return v->status();
  }
  if (!(*factor > 0) || !(*beta_fast > 0) || !(*beta_slow > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": factor, beta_fast and beta_slow must be > 0"));
  }
  bool truncate = true;
  if (auto it = params->find("truncate"); it != params->end() && it->is_boolean()) {
    truncate = it->get<bool>();
  }
  out.factor = *factor;
  out.mscale_all_dim = *mscale_all_dim;
  if (*attention_factor >= 0) {
    out.magnitude = static_cast<float>(*attention_factor);
  } else if (*mscale != 0 && *mscale_all_dim != 0) {
    out.magnitude = static_cast<float>(YarnMscale(*factor, *mscale) /
                                       YarnMscale(*factor, *mscale_all_dim));
  } else {
    out.magnitude = static_cast<float>(YarnMscale(*factor, 1.0));
  }
  // Pairs below `low` keep their frequency (extrapolation), pairs above `high` are divided by
  // the factor (interpolation), and a linear ramp blends those between.
  double low = CorrectionDim(*beta_fast, rope_dim, base, *original);
  double high = CorrectionDim(*beta_slow, rope_dim, base, *original);
  if (truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(rope_dim - 1));
  if (low == high) high += 0.001;
  const float factor32 = static_cast<float>(*factor);
  for (int64_t i = 0; i < pairs; ++i) {
    const float ramp = std::clamp(
        (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low), 0.0f,
        1.0f);
    const float extrapolation = 1.0f - ramp;
    const float interpolated = 1.0f / (factor32 * pos_freqs[i]);
    const float extrapolated = 1.0f / pos_freqs[i];
    out.inv_freq[i] = interpolated * (1.0f - extrapolation) + extrapolated * extrapolation;
  }
  return out;
}

}  // namespace tessera::engine
