// What `tessera bench replay` writes to its output directory:
// - summary.json: the options, how the trace was scaled (the plan's notes), and the
//   aggregates (ReplaySummary);
// - requests.csv and requests.json: one row per request (times, tokens, status), the
//   inter-token gaps in the JSON.
// Thread-safety: a function of its arguments.
#ifndef TESSERA_BENCH_REPLAY_REPORT_H_
#define TESSERA_BENCH_REPLAY_REPORT_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/replay.h"
#include "bench/replay_metrics.h"

namespace tessera::bench {

nlohmann::json SummaryJson(const ReplaySummary& summary, const Slo& slo);

// Writes summary.json, requests.csv and requests.json under `dir` (created if missing).
// `run` describes the run (target, trace, options) and goes into summary.json as is.
absl::Status WriteReplayOutputs(const std::string& dir, const nlohmann::json& run,
                                const ReplayPlan& plan, const std::vector<RequestRecord>& records,
                                const ReplaySummary& summary, const Slo& slo);

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_REPLAY_REPORT_H_
