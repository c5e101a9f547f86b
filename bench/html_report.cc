#include "bench/html_report.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/svg_chart.h"

namespace tessera::bench {
namespace {

// The empirical CDF of `values` (in seconds) as points (ms, fraction), at most ~400 of them.
std::vector<std::pair<double, double>> Cdf(std::vector<double> values) {
  std::vector<std::pair<double, double>> points;
  if (values.empty()) return points;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  const size_t step = std::max<size_t>(1, n / 400);
  for (size_t i = 0; i < n; i += step) {
    points.emplace_back(values[i] * 1e3, static_cast<double>(i + 1) / static_cast<double>(n));
  }
  points.emplace_back(values.back() * 1e3, 1.0);
  return points;
}

struct Timeline {
  std::vector<std::pair<double, double>> throughput, in_flight, attainment_vs_load;
};

// Bucketed over the run: output tokens/s, requests in flight at each bucket's middle, and
// (arrival rate, SLO attainment) of the requests that arrived in each window.
Timeline BuildTimeline(const std::vector<RequestRecord>& records, const Slo& slo) {
  Timeline t;
  if (records.empty()) return t;
  double end = 0;
  for (const RequestRecord& r : records) end = std::max(end, r.end_s);
  const double width = std::max(0.1, end / 80);
  const size_t buckets = static_cast<size_t>(std::ceil(end / width)) + 1;
  std::vector<double> tokens(buckets, 0), arrivals(buckets, 0), met(buckets, 0);
  for (const RequestRecord& r : records) {
    for (double at : r.token_times_s) tokens[static_cast<size_t>(at / width)] += 1;
    const size_t b = static_cast<size_t>(r.sent_s / width);
    arrivals[b] += 1;
    if (MeetsSlo(r, slo)) met[b] += 1;
  }
  for (size_t b = 0; b < buckets; ++b) {
    const double mid = (static_cast<double>(b) + 0.5) * width;
    t.throughput.emplace_back(mid, tokens[b] / width);
    int64_t flying = 0;
    for (const RequestRecord& r : records) flying += (r.sent_s <= mid && r.end_s > mid) ? 1 : 0;
    t.in_flight.emplace_back(mid, static_cast<double>(flying));
  }
  // Attainment against load: windows of several buckets, so each holds enough requests.
  const size_t group = std::max<size_t>(1, buckets / 12);
  std::vector<std::pair<double, double>> points;
  for (size_t b = 0; b < buckets; b += group) {
    double n = 0, ok = 0;
    for (size_t k = b; k < std::min(buckets, b + group); ++k) {
      n += arrivals[k];
      ok += met[k];
    }
    if (n > 0) points.emplace_back(n / (width * static_cast<double>(group)), ok / n);
  }
  std::sort(points.begin(), points.end());
  t.attainment_vs_load = std::move(points);
  return t;
}

std::string Ms(const Percentiles& p) {
  return absl::StrFormat("%.0f / %.0f / %.0f", p.p50 * 1e3, p.p90 * 1e3, p.p99 * 1e3);
}

}  // namespace

std::string RenderHtmlReport(const std::string& title, const std::vector<ReportRun>& runs) {
  LineChart ttft{"ttft-cdf", "TTFT (CDF)", "time to first token, ms", "fraction of requests"};
  LineChart tpot{"tpot-cdf", "TPOT (CDF)", "time per output token, ms", "fraction of requests"};
  LineChart e2e{"e2e-cdf", "End-to-end latency (CDF)", "latency, ms", "fraction of requests"};
  LineChart throughput{"throughput", "Output throughput over time", "seconds from start",
                       "output tokens/s"};
  LineChart in_flight{"in-flight", "Requests in flight over time", "seconds from start",
                      "requests"};
  LineChart attainment{"attainment-vs-load",
                       "SLO attainment against offered load (time windows of each run)",
                       "requests/s arriving in the window", "fraction meeting the SLOs"};
  attainment.markers = true;
  LineChart sweep_attainment{"sweep-attainment", "SLO attainment against offered rate",
                             "offered requests/s", "fraction meeting the SLOs"};
  LineChart sweep_goodput{"sweep-goodput", "Goodput against offered rate", "offered requests/s",
                          "requests/s meeting the SLOs"};
  sweep_attainment.markers = sweep_goodput.markers = true;
  std::map<std::string, ChartSeries> sweep_a, sweep_g;
  std::string table =
      "<table><tr><th>run</th><th>requests (ok)</th><th>req/s</th><th>output tok/s</th>"
      "<th>TTFT p50/p90/p99 ms</th><th>TPOT p50/p90/p99 ms</th><th>E2E p50/p90/p99 ms</th>"
      "<th>SLOs (TTFT, TPOT ms)</th><th>attainment</th><th>goodput req/s</th><th>errors</th>"
      "</tr>\n";
  std::string notes;
  for (const ReportRun& run : runs) {
    const ReplaySummary s = Summarize(run.records, run.slo);
    std::vector<double> ttfts, tpots, e2es;
    for (const RequestRecord& r : run.records) {
      if (!r.ok()) continue;
      if (auto v = r.ttft()) ttfts.push_back(*v);
      if (auto v = r.tpot()) tpots.push_back(*v);
      e2es.push_back(r.end_to_end());
    }
    ttft.series.push_back({run.label, Cdf(ttfts)});
    tpot.series.push_back({run.label, Cdf(tpots)});
    e2e.series.push_back({run.label, Cdf(e2es)});
    Timeline t = BuildTimeline(run.records, run.slo);
    throughput.series.push_back({run.label, std::move(t.throughput)});
    in_flight.series.push_back({run.label, std::move(t.in_flight)});
    attainment.series.push_back({run.label, std::move(t.attainment_vs_load)});
    if (run.offered_rate > 0) {
      const std::string group = run.group.empty() ? run.label : run.group;
      sweep_a[group].name = sweep_g[group].name = group;
      sweep_a[group].points.emplace_back(run.offered_rate, s.slo_attainment);
      sweep_g[group].points.emplace_back(run.offered_rate, s.goodput);
    }
    std::string errors;
    for (const auto& [code, count] : s.errors) absl::StrAppend(&errors, code, ": ", count, " ");
    absl::StrAppendFormat(
        &table,
        "<tr><td>%s</td><td>%d (%d)</td><td>%.2f</td><td>%.1f</td><td>%s</td><td>%s</td>"
        "<td>%s</td><td>%.0f, %.0f</td><td>%.1f%%</td><td>%.3f</td><td>%s</td></tr>\n",
        HtmlEscape(run.label), s.requests, s.succeeded, s.requests_per_s, s.output_tokens_per_s,
        Ms(s.ttft_s), Ms(s.tpot_s), Ms(s.e2e_s), run.slo.ttft_s * 1e3, run.slo.tpot_s * 1e3,
        s.slo_attainment * 100, s.goodput, HtmlEscape(errors.empty() ? "none" : errors));
    if (!run.notes.empty()) {
      absl::StrAppend(&notes, "<li><b>", HtmlEscape(run.label), "</b>: ");
      for (const std::string& n : run.notes) absl::StrAppend(&notes, HtmlEscape(n), "; ");
      notes += "</li>\n";
    }
  }
  table += "</table>\n";
  std::string charts = RenderSvg(ttft) + RenderSvg(tpot) + RenderSvg(e2e) + RenderSvg(throughput) +
                       RenderSvg(in_flight) + RenderSvg(attainment);
  if (!sweep_a.empty()) {
    for (auto& [group, series] : sweep_a) {
      std::sort(series.points.begin(), series.points.end());
      sweep_attainment.series.push_back(series);
    }
    for (auto& [group, series] : sweep_g) {
      std::sort(series.points.begin(), series.points.end());
      sweep_goodput.series.push_back(series);
    }
    charts += RenderSvg(sweep_attainment) + RenderSvg(sweep_goodput);
  }
  return absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>", HtmlEscape(title),
      "</title>\n<style>body{font-family:sans-serif;margin:24px}table{border-collapse:collapse;"
      "font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
      "td:first-child{text-align:left}svg.chart{margin:8px;border:1px solid #eee}</style>"
      "</head>\n<body>\n<h1>",
      HtmlEscape(title), "</h1>\n", table, "<ul>", notes, "</ul>\n<div>", charts,
      "</div>\n<script>\n"
      "// How many charts drew at least one line: read by the report's tests.\n"
      "var drawn = 0;\n"
      "document.querySelectorAll('svg.chart').forEach(function (svg) {\n"
      "  var lines = Array.prototype.filter.call(svg.querySelectorAll('polyline.series'),\n"
      "      function (p) { var b = p.getBBox(); return b.width > 0 || b.height > 0; });\n"
      "  if (lines.length > 0) drawn++;\n"
      "});\n"
      "document.body.setAttribute('data-charts-drawn', drawn);\n"
      "document.body.setAttribute('data-charts', document.querySelectorAll('svg.chart').length);\n"
      "</script>\n</body></html>\n");
}

absl::StatusOr<ReportRun> ReadReplayRun(const std::string& dir, const std::string& label) {
  std::ifstream summary_in(dir + "/summary.json"), requests_in(dir + "/requests.json");
  if (!summary_in || !requests_in) {
    return absl::NotFoundError(
        absl::StrCat(dir, ": no summary.json and requests.json (not a replay's output)"));
  }
  const nlohmann::json summary = nlohmann::json::parse(summary_in, nullptr, false);
  const nlohmann::json requests = nlohmann::json::parse(requests_in, nullptr, false);
  if (summary.is_discarded() || requests.is_discarded() || !requests.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": summary.json or requests.json is not valid JSON"));
  }
  ReportRun run;
  run.label = label;
  try {
    run.slo.ttft_s = summary.at("summary").at("slo").at("ttft_s").get<double>();
    run.slo.tpot_s = summary.at("summary").at("slo").at("tpot_s").get<double>();
    for (const auto& n : summary.value("notes", nlohmann::json::array())) {
      run.notes.push_back(n.get<std::string>());
    }
    run.offered_rate = summary.at("run").value("offered_rate", 0.0);
    for (const nlohmann::json& row : requests) {
      RequestRecord r;
      r.index = row.at("index").get<int64_t>();
      r.scheduled_s = row.at("scheduled_s").get<double>();
      r.sent_s = row.at("sent_s").get<double>();
      r.end_s = row.at("end_s").get<double>();
      r.input_tokens = row.at("input_tokens").get<int64_t>();
      r.max_tokens = row.at("max_tokens").get<int64_t>();
      r.status = row.at("status").get<std::string>();
      if (row.contains("ttft_s")) {
        double at = r.sent_s + row["ttft_s"].get<double>();
        r.token_times_s.push_back(at);
        for (const auto& gap : row.at("inter_token_s")) {
          at += gap.get<double>();
          r.token_times_s.push_back(at);
        }
      }
      run.records.push_back(std::move(r));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": unexpected replay output: ", e.what()));
  }
  return run;
}

}  // namespace tessera::bench
