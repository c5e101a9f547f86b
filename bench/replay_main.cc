#include "bench/replay_main.h"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "bench/prompt_synth.h"
#include "bench/replay_report.h"
#include "engine/gguf/gguf_file.h"
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

}  // namespace

absl::Status RunReplayCommand(ReplayCommandOptions o) {
  absl::StatusOr<Trace> trace = ReadTrace(o.trace_path, o.format);
  if (!trace.ok()) return trace.status();
  absl::StatusOr<std::unique_ptr<engine::GgufFile>> file =
      engine::GgufFile::Open(o.tokenizer_model);
  if (!file.ok()) return file.status();
  absl::StatusOr<std::unique_ptr<engine::Tokenizer>> tokenizer =
      engine::Tokenizer::FromGguf(**file);
  if (!tokenizer.ok()) return tokenizer.status();
  if (o.replay.context <= 0) {
    absl::StatusOr<std::string> arch = (*file)->GetString("general.architecture");
    absl::StatusOr<int64_t> context =
        arch.ok() ? (*file)->GetInt(*arch + ".context_length") : arch.status();
    if (!context.ok()) return context.status();
    o.replay.context = static_cast<int32_t>(*context);
  }
  absl::StatusOr<std::unique_ptr<PromptSynthesizer>> prompts =
      PromptSynthesizer::Create(**tokenizer);
  if (!prompts.ok()) return prompts.status();
  absl::StatusOr<ReplayPlan> plan = PlanReplay(*trace, o.replay, **prompts);
  if (!plan.ok()) return plan.status();
  for (const std::string& note : plan->notes) std::printf("%s\n", note.c_str());
  std::fflush(stdout);
  const int64_t total = static_cast<int64_t>(plan->requests.size());
  if (o.progress) {
    o.replay.on_progress = [total](int64_t sent, int64_t done, int64_t errors) {
      PrintProgress(total, sent, done, errors);
    };
  }
  absl::StatusOr<std::vector<RequestRecord>> records = RunReplay(*plan, o.replay);
  if (o.progress) std::fprintf(stderr, "\n");
  if (!records.ok()) return records.status();
  const ReplaySummary s = Summarize(*records, o.slo);
  const nlohmann::json run = {{"trace", o.trace_path},
                              {"format", TraceFormatName(trace->format)},
                              {"target", o.replay.target},
                              {"tokenizer_model", o.tokenizer_model},
                              {"context", o.replay.context},
                              {"time_scale", o.replay.time_scale},
                              {"length_scale", o.replay.length_scale},
                              {"max_requests", o.replay.max_requests},
                              {"duration_s", o.replay.duration_s}};
  if (absl::Status w = WriteReplayOutputs(o.out_dir, run, *plan, *records, s, o.slo); !w.ok()) {
    return w;
  }
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
  std::printf("  sends: p50 %.0f us, p99 %.0f us after their scheduled time\n",
              s.send_lateness_s.p50 * 1e6, s.send_lateness_s.p99 * 1e6);
  std::printf("  SLOs (TTFT %.0f ms, TPOT %.0f ms): %.1f%% met, goodput %.2f requests/s\n",
              o.slo.ttft_s * 1e3, o.slo.tpot_s * 1e3, s.slo_attainment * 100, s.goodput);
  std::printf("wrote %s/summary.json, requests.csv, requests.json\n", o.out_dir.c_str());
  return absl::OkStatus();
}

}  // namespace tessera::bench
