#include "bench/replay_main.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/html_report.h"
#include "bench/prompt_synth.h"
#include "bench/replay_report.h"
#include "engine/runtime/loaded_model.h"
#include "engine/tokenizer/tokenizer.h"

namespace tessera::bench {
namespace {

// One line, rewritten in place on a terminal (a new line each time otherwise).
void PrintProgress(int64_t total, int64_t sent, int64_t done, int64_t errors) {
  constexpr int kWidth = 30;
  const int filled = total > 0 ? static_cast<int>(kWidth * done / total) : 0;
  std::string bar(static_cast<size_t>(filled), '=');
  bar.resize(kWidth, ' ');
  const bool tty = isatty(fileno(stderr));
  std::fprintf(stderr, "%s[%s] %lld/%lld done, %lld in flight, %lld errors%s", tty ? "\r" : "",
               bar.c_str(), static_cast<long long>(done), static_cast<long long>(total),
               static_cast<long long>(sent - done), static_cast<long long>(errors),
               tty ? "" : "\n");
  std::fflush(stderr);
}

// One replay of `plan`, written to `dir`; its run for the report.
absl::StatusOr<ReportRun> ReplayOnce(const ReplayCommandOptions& o, const ReplayOptions& replay,
                                     const ReplayPlan& plan, const Trace& trace,
                                     const std::string& dir, double offered_rate) {
  for (const std::string& note : plan.notes) std::printf("%s\n", note.c_str());
  std::fflush(stdout);
  ReplayOptions options = replay;
  const int64_t total = static_cast<int64_t>(plan.requests.size());
  if (o.progress) {
    options.on_progress = [total](int64_t sent, int64_t done, int64_t errors) {
      PrintProgress(total, sent, done, errors);
    };
  }
  absl::StatusOr<std::vector<RequestRecord>> records = RunReplay(plan, options);
  if (o.progress) std::fprintf(stderr, "\n");
  if (!records.ok()) return records.status();
  const ReplaySummary s = Summarize(*records, o.slo);
  const nlohmann::json run = {{"trace", o.trace_path},
                              {"format", TraceFormatName(trace.format)},
                              {"target", options.target},
                              {"tokenizer_model", o.tokenizer_model},
                              {"context", options.context},
                              {"time_scale", options.time_scale},
                              {"offered_rate", offered_rate},
                              {"length_scale", options.length_scale},
                              {"max_requests", options.max_requests},
                              {"duration_s", options.duration_s}};
  if (absl::Status w = WriteReplayOutputs(dir, run, plan, *records, s, o.slo); !w.ok()) return w;
  std::printf("%lld requests, %lld succeeded in %.1f s: %.2f requests/s, %.1f output tokens/s\n",
              static_cast<long long>(s.requests), static_cast<long long>(s.succeeded), s.duration_s,
              s.requests_per_s, s.output_tokens_per_s);
  for (const auto& [code, count] : s.errors) {
    std::printf("  errors %s: %lld\n", code.c_str(), static_cast<long long>(count));
  }
  auto row = [](const char* name, const Percentiles& p) {
    std::printf("  %-6s p50 %9.1f ms  p90 %9.1f ms  p99 %9.1f ms  (%lld)\n", name, p.p50 * 1e3,
                p.p90 * 1e3, p.p99 * 1e3, static_cast<long long>(p.count));
  };
  row("TTFT", s.ttft_s);
  row("TPOT", s.tpot_s);
  row("ITL", s.itl_s);
  row("E2E", s.e2e_s);
  std::printf(
      "  sends: %.1f requests/s issued; p50 %.0f us, p99 %.0f us after their scheduled "
      "time\n",
      s.sent_per_s, s.send_lateness_s.p50 * 1e6, s.send_lateness_s.p99 * 1e6);
  std::printf("  SLOs (TTFT %.0f ms, TPOT %.0f ms): %.1f%% met, goodput %.3f requests/s\n",
              o.slo.ttft_s * 1e3, o.slo.tpot_s * 1e3, s.slo_attainment * 100, s.goodput);
  std::printf("wrote %s/summary.json, requests.csv, requests.json\n", dir.c_str());
  const std::string label = o.label.empty() ? options.target : o.label;
  ReportRun report{
      .label = offered_rate > 0 ? absl::StrFormat("%s @ %g req/s", label, offered_rate) : label,
      .group = label,
      .offered_rate = offered_rate,
      .records = *std::move(records),
      .slo = o.slo,
      .notes = plan.notes};
  return report;
}

absl::Status WriteReport(const std::string& path, const std::string& title,
                         const std::vector<ReportRun>& runs) {
  std::ofstream out(path);
  out << RenderHtmlReport(title, runs);
  out.close();
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  std::printf("wrote %s\n", path.c_str());
  return absl::OkStatus();
}

}  // namespace

absl::Status RunReplayCommand(ReplayCommandOptions o) {
  absl::StatusOr<Trace> trace = ReadTrace(o.trace_path, o.format);
  if (!trace.ok()) return trace.status();
  absl::StatusOr<engine::ModelFacts> model = engine::ReadModelFacts(o.tokenizer_model);
  if (!model.ok()) return model.status();
  const std::unique_ptr<engine::Tokenizer>& tokenizer = model->tokenizer;
  if (o.replay.context <= 0) o.replay.context = model->context_length;
  absl::StatusOr<std::unique_ptr<PromptSynthesizer>> prompts =
      PromptSynthesizer::Create(*tokenizer);
  if (!prompts.ok()) return prompts.status();
  std::vector<ReportRun> runs;
  if (o.rates.empty()) {
    absl::StatusOr<ReplayPlan> plan = PlanReplay(*trace, o.replay, **prompts);
    if (!plan.ok()) return plan.status();
    absl::StatusOr<ReportRun> run = ReplayOnce(o, o.replay, *plan, *trace, o.out_dir, 0);
    if (!run.ok()) return run.status();
    runs.push_back(*std::move(run));
  } else {
    // The trace's own mean rate over the requests replayed, to scale each run to its rate.
    ReplayOptions unscaled = o.replay;
    unscaled.time_scale = 1;
    unscaled.duration_s = 0;
    absl::StatusOr<ReplayPlan> base = PlanReplay(*trace, unscaled, **prompts);
    if (!base.ok()) return base.status();
    const double span = base->requests.back().at_s - base->requests.front().at_s;
    if (base->requests.size() < 2 || !(span > 0)) {
      return absl::InvalidArgumentError("--rates needs a trace of at least two distinct arrivals");
    }
    const double trace_rate = static_cast<double>(base->requests.size() - 1) / span;
    for (double rate : o.rates) {
      if (!(rate > 0)) return absl::InvalidArgumentError("--rates must be positive");
      ReplayOptions scaled = o.replay;
      scaled.time_scale = rate / trace_rate;
      // Fresh prompts for each load level: a rerun of the same text would hit the server's
      // prefix cache and flatter the later runs.
      scaled.prompt_salt = o.replay.prompt_salt + runs.size() + 1;
      absl::StatusOr<ReplayPlan> plan = PlanReplay(*trace, scaled, **prompts);
      if (!plan.ok()) return plan.status();
      std::printf("== %g requests/s (the trace's %.3f requests/s x %.3f)\n", rate, trace_rate,
                  scaled.time_scale);
      absl::StatusOr<ReportRun> run =
          ReplayOnce(o, scaled, *plan, *trace, absl::StrCat(o.out_dir, "/rate-", rate), rate);
      if (!run.ok()) return run.status();
      runs.push_back(*std::move(run));
    }
  }
  return WriteReport(o.out_dir + "/report.html", "Tessera trace replay: " + o.trace_path, runs);
}

absl::Status RunReportCommand(const ReportCommandOptions& options) {
  std::vector<ReportRun> runs;
  for (const std::string& spec : options.runs) {
    const size_t eq = spec.find('=');
    const std::string label = eq == std::string::npos ? spec : spec.substr(0, eq);
    const std::string dir = eq == std::string::npos ? spec : spec.substr(eq + 1);
    // A sweep's directory holds one replay per load level (rate-R/); anything else is one
    // replay.
    std::vector<std::string> dirs;
    std::error_code error;
    if (!std::filesystem::exists(std::filesystem::path(dir) / "summary.json", error)) {
      for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
        if (entry.is_directory() && entry.path().filename().string().starts_with("rate-") &&
            std::filesystem::exists(entry.path() / "summary.json")) {
          dirs.push_back(entry.path().string());
        }
      }
    }
    if (dirs.empty()) dirs.push_back(dir);
    std::vector<ReportRun> group;
    for (const std::string& one : dirs) {
      absl::StatusOr<ReportRun> run = ReadReplayRun(one, label);
      if (!run.ok()) return run.status();
      run->group = label;
      if (run->offered_rate > 0)
        run->label = absl::StrFormat("%s @ %g req/s", label, run->offered_rate);
      group.push_back(*std::move(run));
    }
    std::sort(group.begin(), group.end(), [](const ReportRun& a, const ReportRun& b) {
      return a.offered_rate < b.offered_rate;
    });
    for (ReportRun& run : group) runs.push_back(std::move(run));
  }
  if (runs.empty()) return absl::InvalidArgumentError("--run: give at least one replay directory");
  return WriteReport(options.out, options.title, runs);
}

}  // namespace tessera::bench
