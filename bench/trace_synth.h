// BurstGPT-style synthetic traces: arrivals from a Gamma process of a chosen rate and
// burstiness (the coefficient of variation of the gaps between requests: 1 is Poisson, larger
// is burstier, as BurstGPT measured in production), and request and response lengths drawn
// either jointly from a real trace's rows (its empirical distribution) or from Zipf laws.
// Deterministic for a seed.
// Thread-safety: a function of its arguments.
#ifndef TESSERA_BENCH_TRACE_SYNTH_H_
#define TESSERA_BENCH_TRACE_SYNTH_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "bench/trace.h"

namespace tessera::bench {

struct ZipfLengths {
  double exponent = 1.1;  // P(n) proportional to n^-exponent on [1, max].
  int64_t max_input = 2048;
  int64_t max_output = 512;
};

struct SynthOptions {
  double rate = 1.0;        // Requests per second, on average.
  double burstiness = 1.0;  // Coefficient of variation of the inter-arrival gaps (> 0).
  int64_t requests = 1000;
  // Lengths: pairs (request, response) drawn from this trace's rows if set, else Zipf.
  const Trace* empirical = nullptr;
  ZipfLengths zipf = {};
  uint64_t seed = 1;
  std::string model = "synthetic";
};

// InvalidArgument naming the option when rate, burstiness, requests or the Zipf bounds are
// not positive.
absl::StatusOr<Trace> SynthesizeTrace(const SynthOptions& options);

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_TRACE_SYNTH_H_
