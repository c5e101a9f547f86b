#include "bench/replay_report.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tessera::bench {
namespace {

nlohmann::json PercentilesJson(const Percentiles& p) {
  return {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"mean", p.mean}, {"count", p.count}};
}

absl::Status WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path.string(), ": cannot write"));
  return absl::OkStatus();
}

}  // namespace

nlohmann::json SummaryJson(const ReplaySummary& s, const Slo& slo) {
  return {{"requests", s.requests},
          {"succeeded", s.succeeded},
          {"errors", s.errors},
          {"duration_s", s.duration_s},
          {"sent_per_s", s.sent_per_s},
          {"requests_per_s", s.requests_per_s},
          {"output_tokens_per_s", s.output_tokens_per_s},
          {"input_tokens_per_s", s.input_tokens_per_s},
          {"ttft_s", PercentilesJson(s.ttft_s)},
          {"tpot_s", PercentilesJson(s.tpot_s)},
          {"itl_s", PercentilesJson(s.itl_s)},
          {"e2e_s", PercentilesJson(s.e2e_s)},
          {"send_lateness_s", PercentilesJson(s.send_lateness_s)},
          {"slo", {{"ttft_s", slo.ttft_s}, {"tpot_s", slo.tpot_s}}},
          {"slo_attainment", s.slo_attainment},
          {"goodput_requests_per_s", s.goodput}};
}

absl::Status WriteReplayOutputs(const std::string& dir, const nlohmann::json& run,
                                const ReplayPlan& plan, const std::vector<RequestRecord>& records,
                                const ReplaySummary& summary, const Slo& slo) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot create: ", error.message()));
  }
  const std::filesystem::path base(dir);
  nlohmann::json summary_json = {
      {"run", run}, {"notes", plan.notes}, {"summary", SummaryJson(summary, slo)}};
  if (absl::Status s = WriteFile(base / "summary.json", summary_json.dump(1) + "\n"); !s.ok()) {
    return s;
  }
  std::string csv =
      "index,scheduled_s,sent_s,first_token_s,end_s,input_tokens,max_tokens,output_tokens,"
      "ttft_s,tpot_s,e2e_s,status,meets_slo\n";
  nlohmann::json rows = nlohmann::json::array();
  for (const RequestRecord& r : records) {
    const std::optional<double> ttft = r.ttft(), tpot = r.tpot();
    const auto optional = [](const std::optional<double>& v) {
      return v.has_value() ? absl::StrFormat("%.6f", *v) : std::string();
    };
    absl::StrAppendFormat(
        &csv, "%d,%.6f,%.6f,%s,%.6f,%d,%d,%d,%s,%s,%.6f,%s,%d\n", r.index, r.scheduled_s, r.sent_s,
        r.token_times_s.empty() ? "" : absl::StrFormat("%.6f", r.token_times_s[0]), r.end_s,
        r.input_tokens, r.max_tokens, r.output_tokens(), optional(ttft), optional(tpot),
        r.end_to_end(), r.status, MeetsSlo(r, slo) ? 1 : 0);
    std::vector<double> gaps;
    for (size_t i = 1; i < r.token_times_s.size(); ++i) {
      gaps.push_back(r.token_times_s[i] - r.token_times_s[i - 1]);
    }
    nlohmann::json row = {{"index", r.index},
                          {"scheduled_s", r.scheduled_s},
                          {"sent_s", r.sent_s},
                          {"end_s", r.end_s},
                          {"input_tokens", r.input_tokens},
                          {"max_tokens", r.max_tokens},
                          {"output_tokens", r.output_tokens()},
                          {"status", r.status},
                          {"inter_token_s", gaps},
                          {"meets_slo", MeetsSlo(r, slo)}};
    if (ttft.has_value()) row["ttft_s"] = *ttft;
    if (tpot.has_value()) row["tpot_s"] = *tpot;
    if (!r.error.empty()) row["error"] = r.error;
    rows.push_back(std::move(row));
  }
  if (absl::Status s = WriteFile(base / "requests.csv", csv); !s.ok()) return s;
  return WriteFile(base / "requests.json", rows.dump() + "\n");
}

}  // namespace tessera::bench
