// `tessera bench replay`: reads a trace, plans it (prompts from the model's tokenizer, lengths
// within its context), replays it open loop against a target with a live progress line, and
// writes the outputs (replay_report.h), printing the summary.
// Thread-compatible.
#ifndef TESSERA_BENCH_REPLAY_MAIN_H_
#define TESSERA_BENCH_REPLAY_MAIN_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/replay.h"
#include "bench/replay_metrics.h"
#include "bench/trace.h"

namespace tessera::bench {

struct ReplayCommandOptions {
  std::string trace_path;
  std::optional<TraceFormat> format;
  std::string tokenizer_model;  // GGUF file whose tokenizer (and context) prompts are made for.
  std::string out_dir;
  ReplayOptions replay;  // context 0: the model's.
  Slo slo;
  bool progress = true;
  // A sweep: one replay per offered rate (requests/s; the trace's arrival times are scaled to
  // it), each in its own subdirectory, and a report of goodput against load.
  std::vector<double> rates;
  std::string label;  // The runs' name in the report (default: the target).
};

// `tessera bench report`: renders runs already written by replays into one HTML page.
struct ReportCommandOptions {
  std::vector<std::string> runs;  // "LABEL=DIR" or "DIR".
  std::string out;                // HTML file.
  std::string title = "Tessera trace replay";
};
absl::Status RunReportCommand(const ReportCommandOptions& options);

absl::Status RunReplayCommand(ReplayCommandOptions options);

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_REPLAY_MAIN_H_
