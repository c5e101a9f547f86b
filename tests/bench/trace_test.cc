// Trace readers (BurstGPT in both layouts, Azure, Mooncake) on the real traces and on small
// fixtures written here, good and malformed, and BurstGPT-style synthesis.
#include "bench/trace.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>

#include "bench/trace_synth.h"
#include "tests/test_paths.h"

namespace tessera::bench {
namespace {

// A file under the test's own temporary directory, holding `text`.
std::string Fixture(const std::string& name, const std::string& text) {
  const std::filesystem::path& dir = testing::ScratchDir("tessera-trace-test");
  const std::string path = (dir / name).string();
  std::ofstream(path) << text;
  return path;
}

std::string SharedTrace(const std::string& name) {
  return testing::SourceDir() + "/../shared/traces/" + name;
}

void RequireError(const absl::StatusOr<Trace>& trace, const std::string& where,
                  const std::string& what) {
  REQUIRE_FALSE(trace.ok());
  CHECK(trace.status().code() == absl::StatusCode::kInvalidArgument);
  const std::string message(trace.status().message());
  INFO(message);
  CHECK_THAT(message, Catch::Contains(where) && Catch::Contains(what));
}

TEST_CASE("Traces: the real traces read in full", "[bench][trace]") {
  SECTION("Azure, wall-clock timestamps") {
    auto trace = ReadTrace(SharedTrace("azure_llm_2023_code.csv"));
    REQUIRE(trace.ok());
    CHECK(trace->format == TraceFormat::kAzure);
    CHECK(trace->rows == 8819);
    CHECK(trace->requests.size() +
              std::accumulate(trace->dropped.begin(), trace->dropped.end(), int64_t{0},
                              [](int64_t a, const auto& d) { return a + d.second; }) ==
          8819);
    // The first rows: "18:17:03.9799600,4808,10" then "18:17:04.0319600,3180,8".
    CHECK(trace->requests[0].arrival_s == 0.0);
    CHECK(trace->requests[0].input_tokens == 4808);
    CHECK(trace->requests[0].output_tokens == 10);
    CHECK(trace->requests[1].arrival_s == Approx(0.052).margin(1e-6));
    CHECK(trace->requests[1].input_tokens == 3180);
  }
  SECTION("the same trace in BurstGPT's layout gives the same requests") {
    auto azure = ReadTrace(SharedTrace("azure_llm_2023_code.csv"));
    auto burst = ReadTrace(SharedTrace("azure_code_burstgpt_format.csv"));
    REQUIRE(azure.ok());
    REQUIRE(burst.ok());
    CHECK(burst->format == TraceFormat::kBurstGpt);
    REQUIRE(burst->requests.size() == azure->requests.size());
    for (size_t i = 0; i < azure->requests.size(); ++i) {
      INFO("request " << i);
      CHECK(burst->requests[i].arrival_s == Approx(azure->requests[i].arrival_s).margin(1e-3));
      CHECK(burst->requests[i].input_tokens == azure->requests[i].input_tokens);
      CHECK(burst->requests[i].output_tokens == azure->requests[i].output_tokens);
    }
    CHECK(burst->requests[0].model == "azure-code");
  }
  SECTION("Mooncake, with its prompt blocks") {
    auto trace = ReadTrace(SharedTrace("mooncake_synthetic.jsonl"));
    REQUIRE(trace.ok());
    CHECK(trace->format == TraceFormat::kMooncake);
    CHECK(trace->rows == 3993);
    CHECK(trace->requests[0].input_tokens == 40160);
    CHECK(trace->requests[0].output_tokens == 6);
    CHECK(trace->requests[0].block_ids.size() == 79);  // ceil(40160 / 512)
    CHECK(trace->requests[0].block_ids[78] == 78);
  }
}

TEST_CASE("Traces: BurstGPT columns are found by name in either layout", "[bench][trace]") {
  const std::string six =
      "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
      "5,ChatGPT,100,20,120,Conversation log\n"
      "1.5,GPT-4,30,0,30,API log\n"  // Failed request: zero response tokens.
      "3,\"Chat, GPT\",0,7,7,API log\n"
      "2,ChatGPT,40,8,48,API log\n";
  const std::string v3 =
      "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,"
      "Log Type\n"
      "5,s1,0.4,ChatGPT,100,20,120,Conversation log\n"
      "1.5,s2,0.1,GPT-4,30,0,30,API log\n"
      "3,s3,0.2,\"Chat, GPT\",0,7,7,API log\n"
      "2,s1,0.3,ChatGPT,40,8,48,API log\n";
  for (const std::string& text : {six, v3}) {
    auto trace = ReadTrace(Fixture("burst.csv", text));
    REQUIRE(trace.ok());
    CHECK(trace->rows == 4);
    REQUIRE(trace->requests.size() == 2);
    // Sorted by arrival, relative to the first kept request.
    CHECK(trace->requests[0].arrival_s == 0.0);
    CHECK(trace->requests[0].input_tokens == 40);
    CHECK(trace->requests[1].arrival_s == 3.0);
    CHECK(trace->requests[1].model == "ChatGPT");
    CHECK(trace->dropped ==
          std::map<std::string, int64_t>{{"zero request tokens", 1}, {"zero response tokens", 1}});
  }
}

TEST_CASE("Traces: unusable rows are dropped and counted by reason", "[bench][trace]") {
  auto azure = ReadTrace(Fixture("azure.csv",
                                 "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                 "2023-11-16 18:17:03.5000000,10,2\n"
                                 "yesterday,10,2\n"
                                 "2023-11-16 18:17:04.0000000,ten,2\n"
                                 "2023-11-16 18:17:05.2500000,-3,2\n"
                                 "2023-11-16 18:17:06.0000000,12,3\n"));
  REQUIRE(azure.ok());
  REQUIRE(azure->requests.size() == 2);
  CHECK(azure->requests[1].arrival_s == Approx(2.5));
  CHECK(azure->dropped == std::map<std::string, int64_t>{{"unparseable timestamp", 1},
                                                         {"unparseable token count", 1},
                                                         {"negative context tokens", 1}});
  auto mooncake = ReadTrace(Fixture("m.jsonl",
                                    "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": "
                                    "4, \"hash_ids\": [0, 1]}\n"
                                    "{\"timestamp\": 10, \"input_length\": 0, \"output_length\": "
                                    "4}\n"
                                    "{\"timestamp\": 20, \"input_length\": 5, \"output_length\": "
                                    "\"x\"}\n"
                                    "{\"timestamp\": 1500, \"input_length\": 5, \"output_length\": "
                                    "1, \"hash_ids\": [0, \"a\"]}\n"
                                    "{\"timestamp\": 2500, \"input_length\": 5, \"output_length\": "
                                    "1}\n"));
  REQUIRE(mooncake.ok());
  REQUIRE(mooncake->requests.size() == 2);
  CHECK(mooncake->requests[1].arrival_s == 2.5);  // Milliseconds to seconds.
  CHECK(mooncake->requests[0].block_ids == std::vector<int64_t>{0, 1});
  CHECK(mooncake->dropped == std::map<std::string, int64_t>{{"zero input length", 1},
                                                            {"unparseable token count", 1},
                                                            {"unparseable hash_ids", 1}});
}

TEST_CASE("Traces: malformed files are errors naming the file and line", "[bench][trace]") {
  SECTION("a required column missing") {
    const std::string path = Fixture("nocol.csv", "Timestamp,Model,Request tokens\n1,m,2\n");
    RequireError(ReadTrace(path), path + ":1:", "Response tokens");
  }
  SECTION("a row with the wrong number of fields") {
    const std::string path = Fixture(
        "short.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.5,1,2\n4,5\n");
    RequireError(ReadTrace(path), path + ":3:", "2 fields, the header has 3");
  }
  SECTION("an unterminated quote") {
    const std::string path = Fixture(
        "quote.csv",
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,\"m,2,3,5,x\n");
    RequireError(ReadTrace(path), path + ":2:", "unterminated quote");
  }
  SECTION("a line that is not JSON") {
    const std::string path = Fixture(
        "bad.jsonl",
        "{\"timestamp\": 0, \"input_length\": 6, \"output_length\": 4}\n{\"timestamp\": 1,\n");
    RequireError(ReadTrace(path), path + ":2:", "not a JSON object");
  }
  SECTION("a JSON line without a required key") {
    const std::string path =
        Fixture("nokey.jsonl",
                "{\"timestamp\": 0, \"input_length\": 6, \"output_length\": 4}\n"
                "{\"timestamp\": 0, \"output_length\": 4}\n");
    RequireError(ReadTrace(path), path + ":2:", "missing \"input_length\"");
  }
  SECTION("not a trace at all") {
    const std::string path = Fixture("what.txt", "hello\n");
    RequireError(ReadTrace(path), path + ":1:", "not a trace");
  }
  SECTION("every row dropped") {
    const std::string path =
        Fixture("allzero.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 1:2:3,0,0\n");
    RequireError(ReadTrace(path), path, "no usable requests");
  }
  SECTION("missing file") {
    auto trace = ReadTrace("/nonexistent/trace.csv");
    REQUIRE_FALSE(trace.ok());
    CHECK(trace.status().code() == absl::StatusCode::kNotFound);
  }
}

TEST_CASE("Synthesis: Gamma arrivals keep the rate and burstiness asked for", "[bench][trace]") {
  for (double cv : {0.5, 1.0, 3.0}) {
    INFO("burstiness " << cv);
    auto trace = SynthesizeTrace({.rate = 40.0, .burstiness = cv, .requests = 40000, .seed = 3});
    REQUIRE(trace.ok());
    std::vector<double> gaps;
    for (size_t i = 1; i < trace->requests.size(); ++i) {
      gaps.push_back(trace->requests[i].arrival_s - trace->requests[i - 1].arrival_s);
    }
    const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / gaps.size();
    double var = 0;
    for (double g : gaps) var += (g - mean) * (g - mean);
    const double measured_cv = std::sqrt(var / gaps.size()) / mean;
    CHECK(mean == Approx(1.0 / 40).epsilon(0.03));
    CHECK(measured_cv == Approx(cv).epsilon(0.06));
  }
}

TEST_CASE("Synthesis: lengths from a trace's rows, or from Zipf", "[bench][trace]") {
  auto source = ReadTrace(SharedTrace("azure_code_burstgpt_format.csv"));
  REQUIRE(source.ok());
  std::set<std::pair<int64_t, int64_t>> pairs;
  for (const TraceRequest& r : source->requests) pairs.insert({r.input_tokens, r.output_tokens});
  auto empirical = SynthesizeTrace({.requests = 5000, .empirical = &*source, .seed = 9});
  REQUIRE(empirical.ok());
  std::set<std::pair<int64_t, int64_t>> seen;
  for (const TraceRequest& r : empirical->requests) {
    REQUIRE(pairs.count({r.input_tokens, r.output_tokens}) == 1);  // Drawn jointly.
    seen.insert({r.input_tokens, r.output_tokens});
  }
  CHECK(seen.size() > 1000);  // Many rows, not one repeated.

  auto zipf = SynthesizeTrace(
      {.requests = 200000, .zipf = {.exponent = 1.2, .max_input = 4096, .max_output = 256}});
  REQUIRE(zipf.ok());
  std::map<int64_t, int64_t> counts;
  for (const TraceRequest& r : zipf->requests) {
    REQUIRE(r.input_tokens >= 1);
    REQUIRE(r.input_tokens <= 4096);
    REQUIRE(r.output_tokens <= 256);
    ++counts[r.input_tokens];
  }
  // P(1) / P(2) = 2^1.2 and P(1) / P(4) = 4^1.2.
  CHECK(static_cast<double>(counts[1]) / counts[2] == Approx(std::pow(2.0, 1.2)).epsilon(0.05));
  CHECK(static_cast<double>(counts[1]) / counts[4] == Approx(std::pow(4.0, 1.2)).epsilon(0.08));
  // Same seed, same trace.
  auto again = SynthesizeTrace(
      {.requests = 200000, .zipf = {.exponent = 1.2, .max_input = 4096, .max_output = 256}});
  REQUIRE(again.ok());
  CHECK(again->requests.back().arrival_s == zipf->requests.back().arrival_s);
  CHECK(again->requests.back().input_tokens == zipf->requests.back().input_tokens);
}

TEST_CASE("Synthesis: the BurstGPT CSV written reads back the same", "[bench][trace]") {
  auto trace = SynthesizeTrace({.rate = 5, .burstiness = 2, .requests = 500, .model = "a,\"b\""});
  REQUIRE(trace.ok());
  const std::string path = Fixture("synth.csv", "");
  REQUIRE(WriteBurstGptCsv(*trace, path).ok());
  auto back = ReadTrace(path);
  REQUIRE(back.ok());
  CHECK(back->format == TraceFormat::kBurstGpt);
  REQUIRE(back->requests.size() == trace->requests.size());
  for (size_t i = 0; i < back->requests.size(); ++i) {
    CHECK(back->requests[i].arrival_s == Approx(trace->requests[i].arrival_s).margin(1e-6));
    CHECK(back->requests[i].input_tokens == trace->requests[i].input_tokens);
    CHECK(back->requests[i].output_tokens == trace->requests[i].output_tokens);
    CHECK(back->requests[i].model == "a,\"b\"");
  }
  CHECK_FALSE(SynthesizeTrace({.rate = 0}).ok());
  CHECK_FALSE(SynthesizeTrace({.burstiness = -1}).ok());
  CHECK_THAT(std::string(SynthesizeTrace({.requests = 0}).status().message()),
             Catch::Contains("--requests"));
}

}  // namespace
}  // namespace tessera::bench
