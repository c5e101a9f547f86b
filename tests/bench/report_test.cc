// The replay report: outputs read back as written, and the HTML page rendered by a real
// headless browser (Debian's chromium, installed by scripts/setup_test_tools) with every chart
// drawn.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

#include "bench/html_report.h"
#include "bench/replay_report.h"
#include "tests/test_paths.h"

namespace tessera::bench {
namespace {

std::filesystem::path TempDir() { return testing::ScratchDir("tessera-report-test"); }

// A run of `n` requests one every `gap` seconds, each with `tokens` tokens `tpot` apart after a
// TTFT growing with the index; every fifth fails when `failures`.
std::vector<RequestRecord> MadeUpRun(int n, double gap, int tokens, double tpot, bool failures) {
  std::vector<RequestRecord> run;
  for (int i = 0; i < n; ++i) {
    RequestRecord r;
    r.index = i;
    r.scheduled_s = i * gap;
    r.sent_s = r.scheduled_s + 1e-4;
    r.input_tokens = 100 + i;
    r.max_tokens = tokens;
    if (failures && i % 5 == 4) {
      r.status = "UNAVAILABLE";
      r.error = "no worker";
      r.end_s = r.sent_s + 0.01;
    } else {
      for (int t = 0; t < tokens; ++t)
        r.token_times_s.push_back(r.sent_s + 0.05 + 0.002 * i + t * tpot);
      r.end_s = r.token_times_s.back();
    }
    run.push_back(std::move(r));
  }
  return run;
}

// The page as headless chromium renders it (its DOM after the scripts ran).
std::string RenderInBrowser(const std::filesystem::path& html) {
  const std::string command = "chromium --headless --no-sandbox --disable-gpu --dump-dom 'file://" +
                              html.string() + "' 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string dom;
  char buffer[65536];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) dom.append(buffer, n);
  pclose(pipe);
  return dom;
}

int Attribute(const std::string& dom, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(dom, m, std::regex(name + "=\"(\\d+)\""))) return -1;
  return std::stoi(m[1]);
}

TEST_CASE("Report: replay outputs read back as they were written", "[bench][report]") {
  const std::vector<RequestRecord> records = MadeUpRun(20, 0.1, 5, 0.01, true);
  const Slo slo{.ttft_s = 0.08, .tpot_s = 0.02};
  ReplayPlan plan;
  plan.notes = {"lengths x 0.5", "clipped: none"};
  const std::string dir = (TempDir() / "run").string();
  REQUIRE(WriteReplayOutputs(dir, {{"target", "grpc://x"}, {"offered_rate", 4.0}}, plan, records,
                             Summarize(records, slo), slo)
              .ok());
  auto run = ReadReplayRun(dir, "tessera");
  REQUIRE(run.ok());
  CHECK(run->label == "tessera");
  CHECK(run->offered_rate == 4.0);
  CHECK(run->slo.ttft_s == slo.ttft_s);
  CHECK(run->notes == plan.notes);
  REQUIRE(run->records.size() == records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    INFO("request " << i);
    CHECK(run->records[i].status == records[i].status);
    REQUIRE(run->records[i].token_times_s.size() == records[i].token_times_s.size());
    for (size_t t = 0; t < records[i].token_times_s.size(); ++t) {
      CHECK(run->records[i].token_times_s[t] == Approx(records[i].token_times_s[t]).margin(1e-9));
    }
  }
  const ReplaySummary again = Summarize(run->records, run->slo);
  const ReplaySummary first = Summarize(records, slo);
  CHECK(again.goodput == Approx(first.goodput));
  CHECK(again.ttft_s.p90 == Approx(first.ttft_s.p90));
  CHECK_FALSE(ReadReplayRun((TempDir() / "missing").string(), "x").ok());
}

TEST_CASE("Report: the page renders in headless chromium with every chart drawn",
          "[bench][report]") {
  std::vector<ReportRun> runs = {{.label = "tessera",
                                  .group = "tessera",
                                  .records = MadeUpRun(60, 0.05, 8, 0.01, false),
                                  .slo = {.ttft_s = 0.1, .tpot_s = 0.02}},
                                 {.label = "llama.cpp <server>",
                                  .group = "llama.cpp",
                                  .records = MadeUpRun(60, 0.05, 8, 0.03, true),
                                  .slo = {.ttft_s = 0.1, .tpot_s = 0.02}}};
  SECTION("two runs side by side") {
    const std::filesystem::path html = TempDir() / "side.html";
    std::ofstream(html) << RenderHtmlReport("side by side", runs);
    const std::string dom = RenderInBrowser(html);
    REQUIRE_FALSE(dom.empty());  // chromium missing? scripts/setup_test_tools installs it.
    for (const char* id :
         {"ttft-cdf", "tpot-cdf", "e2e-cdf", "throughput", "in-flight", "attainment-vs-load"}) {
      CHECK_THAT(dom, Catch::Contains(std::string("id=\"") + id + "\""));
    }
    CHECK(Attribute(dom, "data-charts") == 6);
    CHECK(Attribute(dom, "data-charts-drawn") == 6);
    CHECK_THAT(dom, Catch::Contains("llama.cpp &lt;server&gt;"));  // Escaped, in the legend.
    CHECK_THAT(dom, Catch::Contains("UNAVAILABLE: 12"));
  }
  SECTION("a sweep adds goodput and attainment against the offered rate") {
    for (double rate : {2.0, 4.0, 8.0}) {
      runs.push_back({.label = "sweep",
                      .group = "tessera sweep",
                      .offered_rate = rate,
                      .records = MadeUpRun(20, 1 / rate, 4, 0.01, false),
                      .slo = {.ttft_s = 0.1, .tpot_s = 0.02}});
    }
    const std::filesystem::path html = TempDir() / "sweep.html";
    std::ofstream(html) << RenderHtmlReport("sweep", runs);
    const std::string dom = RenderInBrowser(html);
    REQUIRE_FALSE(dom.empty());
    CHECK(Attribute(dom, "data-charts") == 8);
    CHECK(Attribute(dom, "data-charts-drawn") == 8);
    CHECK_THAT(dom, Catch::Contains("id=\"sweep-goodput\""));
  }
}

}  // namespace
}  // namespace tessera::bench
