// The replay report: one self-contained HTML page (inline SVG, no network, no script
// libraries) with, for one run or several side by side (Tessera against llama.cpp's server,
// disaggregated against colocated, a sweep of load levels):
// - TTFT, TPOT and end-to-end latency CDFs;
// - output throughput and requests in flight over time;
// - SLO attainment against offered load (per time window of each run; and per run when the
//   runs are a sweep), and goodput against offered rate for sweeps;
// - a table of each run's summary and how its trace was scaled.
// A small inline script marks the page with how many charts have drawn lines
// (body[data-charts-drawn]), which the tests read from a headless browser.
// Thread-safety: functions of their arguments.
#ifndef TESSERA_BENCH_HTML_REPORT_H_
#define TESSERA_BENCH_HTML_REPORT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/replay_metrics.h"

namespace tessera::bench {

struct ReportRun {
  std::string label;        // Legend name, e.g. "tessera 1P1D @ 2 req/s".
  std::string group;        // Runs of one sweep share a group ("tessera 1P1D").
  double offered_rate = 0;  // Requests/s the replay offered (0: not part of a sweep).
  std::vector<RequestRecord> records = {};
  Slo slo = {};
  std::vector<std::string> notes = {};
};

std::string RenderHtmlReport(const std::string& title, const std::vector<ReportRun>& runs);

// Reads back what WriteReplayOutputs wrote to `dir` (summary.json and requests.json).
absl::StatusOr<ReportRun> ReadReplayRun(const std::string& dir, const std::string& label);

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_HTML_REPORT_H_
