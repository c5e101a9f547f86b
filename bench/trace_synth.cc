#include "bench/trace_synth.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tessera::bench {
namespace {

// Samples n in [1, max] with P(n) proportional to n^-s, by inverse CDF over a table.
class ZipfSampler {
 public:
  ZipfSampler(double s, int64_t max) : cumulative_(static_cast<size_t>(max)) {
    double total = 0;
    for (int64_t n = 1; n <= max; ++n) {
      total += std::pow(static_cast<double>(n), -s);
      cumulative_[static_cast<size_t>(n - 1)] = total;
    }
    for (double& c : cumulative_) c /= total;
  }
  int64_t operator()(std::mt19937_64& rng) const {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    const auto it = std::lower_bound(cumulative_.begin(), cumulative_.end(), u);
    return std::min<int64_t>(static_cast<int64_t>(it - cumulative_.begin()) + 1,
                             static_cast<int64_t>(cumulative_.size()));
  }

 private:
  std::vector<double> cumulative_;
};

}  // namespace

absl::StatusOr<Trace> SynthesizeTrace(const SynthOptions& o) {
  if (!(o.rate > 0) || !std::isfinite(o.rate)) {
    return absl::InvalidArgumentError(absl::StrCat("--rate must be positive, got ", o.rate));
  }
  if (!(o.burstiness > 0) || !std::isfinite(o.burstiness)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--burstiness must be positive, got ", o.burstiness));
  }
  if (o.requests < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--requests must be positive, got ", o.requests));
  }
  if (o.empirical == nullptr &&
      (o.zipf.max_input < 1 || o.zipf.max_output < 1 || !(o.zipf.exponent > 0))) {
    return absl::InvalidArgumentError(
        "--zipf-exponent, --max-input and --max-output must be positive");
  }
  if (o.empirical != nullptr && o.empirical->requests.empty()) {
    return absl::InvalidArgumentError("the empirical trace has no requests");
  }
  std::mt19937_64 rng(o.seed);
  // Gamma gaps: shape k and scale theta with mean k * theta = 1 / rate and CV 1 / sqrt(k).
  const double shape = 1.0 / (o.burstiness * o.burstiness);
  std::gamma_distribution<double> gap(shape, 1.0 / (o.rate * shape));
  std::unique_ptr<ZipfSampler> inputs, outputs;
  if (o.empirical == nullptr) {
    inputs = std::make_unique<ZipfSampler>(o.zipf.exponent, o.zipf.max_input);
    outputs = std::make_unique<ZipfSampler>(o.zipf.exponent, o.zipf.max_output);
  }
  Trace trace;
  trace.format = TraceFormat::kBurstGpt;
  trace.path = "(synthetic)";
  double t = 0;
  for (int64_t i = 0; i < o.requests; ++i) {
    TraceRequest r;
    if (i > 0) t += gap(rng);
    r.arrival_s = t;
    if (o.empirical != nullptr) {
      const auto& rows = o.empirical->requests;
      const TraceRequest& source =
          rows[std::uniform_int_distribution<size_t>(0, rows.size() - 1)(rng)];
      r.input_tokens = source.input_tokens;
      r.output_tokens = source.output_tokens;
    } else {
      r.input_tokens = (*inputs)(rng);
      r.output_tokens = (*outputs)(rng);
    }
    r.model = o.model;
    trace.requests.push_back(std::move(r));
  }
  trace.rows = o.requests;
  return trace;
}

}  // namespace tessera::bench
