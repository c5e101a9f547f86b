// Trace replay: metrics on a recorded run with known answers, prompts of exact token counts,
// planning (scaling, clipping, cutting, Mooncake prefix sharing), and the open-loop sender
// against the bench's instant server (arrivals on schedule, every token recorded).
#include "bench/replay.h"

#include <catch2/catch.hpp>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/instant_http_server.h"
#include "bench/instant_server.h"
#include "bench/trace_synth.h"
#include "engine/gguf/gguf_file.h"
#include "tests/test_paths.h"

namespace tessera::bench {
namespace {

RequestRecord Record(double sent, std::vector<double> tokens, std::string status = "OK") {
  RequestRecord r;
  r.sent_s = sent;
  r.scheduled_s = sent;
  r.token_times_s = std::move(tokens);
  r.end_s = r.token_times_s.empty() ? sent + 0.1 : r.token_times_s.back();
  r.status = std::move(status);
  r.input_tokens = 10;
  return r;
}

TEST_CASE("Replay metrics: a recorded run's figures, computed by hand", "[bench][replay]") {
  std::vector<RequestRecord> run = {
      Record(0, {0.1, 0.2, 0.3}),  // TTFT 0.1, TPOT 0.1
      Record(1, {1.5, 1.7}),       // TTFT 0.5, TPOT 0.2
      Record(2, {2.2}),            // TTFT 0.2, no TPOT
      Record(3, {}, "UNAVAILABLE"),
  };
  run[3].end_s = 3.1;
  const ReplaySummary s = Summarize(run, {.ttft_s = 0.3, .tpot_s = 0.15});
  CHECK(s.requests == 4);
  CHECK(s.succeeded == 3);
  CHECK(s.errors == std::map<std::string, int64_t>{{"UNAVAILABLE", 1}});
  CHECK(s.duration_s == Approx(3.1));
  CHECK(s.sent_per_s == Approx(1.0));  // 4 sends over 3 s: 3 gaps.
  CHECK(s.requests_per_s == Approx(3 / 3.1));
  CHECK(s.output_tokens_per_s == Approx(6 / 3.1));
  CHECK(s.input_tokens_per_s == Approx(30 / 3.1));
  // TTFTs {0.1, 0.2, 0.5}: linear interpolation between ranks.
  CHECK(s.ttft_s.count == 3);
  CHECK(s.ttft_s.p50 == Approx(0.2));
  CHECK(s.ttft_s.p90 == Approx(0.2 + 0.8 * 0.3));
  CHECK(s.ttft_s.p99 == Approx(0.2 + 0.98 * 0.3));
  CHECK(s.ttft_s.mean == Approx(0.8 / 3));
  CHECK(s.tpot_s.count == 2);
  CHECK(s.tpot_s.p50 == Approx(0.15));
  // Gaps 0.1, 0.1 and 0.2.
  CHECK(s.itl_s.count == 3);
  CHECK(s.itl_s.p50 == Approx(0.1));
  CHECK(s.e2e_s.p50 == Approx(0.3));
  // Requests 0 and 2 meet both SLOs; 1 misses TTFT; 3 failed.
  CHECK(s.slo_attainment == Approx(0.5));
  CHECK(s.goodput == Approx(2 / 3.1));
  CHECK(Summarize(run, {}).slo_attainment == Approx(0.75));  // No SLOs: every success.
  CHECK(Percentile({1, 2, 3, 4}, 50) == Approx(2.5));
  CHECK(Percentile({7}, 99) == 7);
}

std::unique_ptr<engine::Tokenizer> DefaultTokenizer() {
  auto file = engine::GgufFile::Open(testing::DefaultModelPath());
  if (!file.ok()) FAIL("cannot open the default model: " << file.status());
  auto tokenizer = engine::Tokenizer::FromGguf(**file);
  if (!tokenizer.ok()) FAIL(tokenizer.status());
  return *std::move(tokenizer);
}

TEST_CASE("Prompt synthesis: prompts are exactly the token counts asked for", "[bench][replay]") {
  const auto tokenizer = DefaultTokenizer();
  auto prompts = PromptSynthesizer::Create(*tokenizer);
  REQUIRE(prompts.ok());
  CHECK((*prompts)->words() >= 256);
  for (int64_t n : {1, 7, 100, 2000}) {
    for (uint64_t seed : {1u, 2u}) {
      const std::vector<int32_t> ids = (*prompts)->Tokens(n, seed);
      REQUIRE(static_cast<int64_t>(ids.size()) == n);
      // What a server tokenizing the text sees.
      CHECK(tokenizer->Encode((*prompts)->Text(ids), false) == ids);
    }
  }
  CHECK((*prompts)->Tokens(50, 1) == (*prompts)->Tokens(50, 1));
  CHECK((*prompts)->Tokens(50, 1) != (*prompts)->Tokens(50, 2));
  // Shared leading blocks, shared leading tokens; then they part.
  const std::vector<int64_t> a = {4, 9, 1}, b = {4, 9, 2};
  const auto pa = (*prompts)->BlockTokens(a, 16, 40, 1);
  const auto pb = (*prompts)->BlockTokens(b, 16, 40, 2);
  REQUIRE(pa.size() == 40);
  CHECK(std::equal(pa.begin(), pa.begin() + 32, pb.begin()));
  CHECK(!std::equal(pa.begin() + 32, pa.end(), pb.begin() + 32));
  // Longer than its blocks: the rest comes from the request's own seed.
  CHECK((*prompts)->BlockTokens(a, 16, 60, 1).size() == 60);
}

TEST_CASE("Replay planning: scaling, clipping and cutting are applied and reported",
          "[bench][replay]") {
  const auto tokenizer = DefaultTokenizer();
  auto prompts = PromptSynthesizer::Create(*tokenizer);
  REQUIRE(prompts.ok());
  Trace trace;
  trace.format = TraceFormat::kMooncake;
  trace.dropped["zero input length"] = 2;
  trace.requests = {
      {.arrival_s = 0, .input_tokens = 2000, .output_tokens = 100, .block_ids = {1, 2, 3, 4}},
      {.arrival_s = 1, .input_tokens = 1200, .output_tokens = 50, .block_ids = {1, 2, 7}},
      {.arrival_s = 2, .input_tokens = 50000, .output_tokens = 10},
      {.arrival_s = 30, .input_tokens = 10, .output_tokens = 10}};
  ReplayOptions options{.time_scale = 2, .duration_s = 10, .length_scale = 0.5, .context = 2048};
  auto plan = PlanReplay(trace, options, **prompts);
  REQUIRE(plan.ok());
  REQUIRE(plan->requests.size() == 3);  // The last is due at 15 s, after --duration.
  CHECK(plan->requests[1].at_s == 0.5);
  CHECK(plan->requests[0].prompt.size() == 1000);
  CHECK(plan->requests[0].max_tokens == 50);
  CHECK(plan->requests[1].prompt.size() == 600);
  // Blocks of 256 tokens (512 x 0.5): the first two are shared.
  CHECK(std::equal(plan->requests[0].prompt.begin(), plan->requests[0].prompt.begin() + 512,
                   plan->requests[1].prompt.begin()));
  CHECK(plan->requests[0].prompt[512] != plan->requests[1].prompt[512]);
  // 25,000 + 5 tokens do not fit 2048: the prompt is cut.
  CHECK(plan->requests[2].prompt.size() == 2048 - 5);
  const std::string notes = absl::StrJoin(plan->notes, "\n");
  INFO(notes);
  CHECK_THAT(notes, Catch::Contains("arrival times / 2; lengths x 0.5; 3 of 4 requests"));
  CHECK_THAT(notes, Catch::Contains("2 (zero input length)"));
  CHECK_THAT(notes, Catch::Contains("1 prompts cut"));
  CHECK_THAT(notes, Catch::Contains("1 requests after --duration"));
  CHECK_THAT(notes, Catch::Contains("prompt blocks of 256 tokens"));
  // Another salt: other text, same lengths and the same sharing.
  ReplayOptions salted = options;
  salted.prompt_salt = 7;
  auto other = PlanReplay(trace, salted, **prompts);
  REQUIRE(other.ok());
  for (size_t i = 0; i < 3; ++i) {
    CHECK(other->requests[i].prompt.size() == plan->requests[i].prompt.size());
    CHECK(other->requests[i].prompt != plan->requests[i].prompt);
  }
  CHECK(std::equal(other->requests[0].prompt.begin(), other->requests[0].prompt.begin() + 512,
                   other->requests[1].prompt.begin()));
  options.max_requests = 2;
  CHECK(PlanReplay(trace, options, **prompts)->requests.size() == 2);
  options.context = 1;
  CHECK_FALSE(PlanReplay(trace, options, **prompts).ok());
}

TEST_CASE(
    "Replay: open-loop sends keep to the schedule at 500 requests/s and record every "
    "token, over gRPC and over HTTP",
    "[bench][replay]") {
  const bool http = GENERATE(false, true);
  INFO((http ? "HTTP" : "gRPC") << " target");
  std::unique_ptr<InstantServer> grpc_server;
  std::unique_ptr<InstantHttpServer> http_server;
  std::string target;
  if (http) {
    auto started = InstantHttpServer::Start("127.0.0.1:0", std::chrono::milliseconds(0));
    REQUIRE(started.ok());
    http_server = *std::move(started);
    target = absl::StrCat("http://127.0.0.1:", http_server->port());
  } else {
    auto started = InstantServer::Start("127.0.0.1:0", std::chrono::milliseconds(0));
    REQUIRE(started.ok());
    grpc_server = *std::move(started);
    target = absl::StrCat("grpc://127.0.0.1:", grpc_server->port());
  }
  auto trace = SynthesizeTrace({.rate = 500,
                                .burstiness = 1,
                                .requests = 1000,
                                .zipf = {.exponent = 1.1, .max_input = 64, .max_output = 8}});
  REQUIRE(trace.ok());
  const auto tokenizer = DefaultTokenizer();
  auto prompts = PromptSynthesizer::Create(*tokenizer);
  REQUIRE(prompts.ok());
  ReplayOptions options{.target = target, .context = 2048};
  auto plan = PlanReplay(*trace, options, **prompts);
  REQUIRE(plan.ok());
  auto records = RunReplay(*plan, options);
  REQUIRE(records.ok());
  REQUIRE(records->size() == 1000);
  for (const RequestRecord& r : *records) {
    INFO("request " << r.index << ": " << r.status << " " << r.error);
    REQUIRE(r.ok());
    CHECK(r.output_tokens() == r.max_tokens);
    CHECK(r.end_s >= r.sent_s);
  }
  CHECK((http ? http_server->requests() : grpc_server->requests()) == 1000);
  const ReplaySummary s = Summarize(*records, {});
  INFO("send lateness p50 " << s.send_lateness_s.p50 * 1e6 << " us, p99 "
                            << s.send_lateness_s.p99 * 1e6 << " us");
  // Within 1 ms of the schedule (the 1% tail may meet a preemption on a shared machine).
  CHECK(s.send_lateness_s.p50 < 1e-3);
  CHECK(s.send_lateness_s.p99 < 1e-3);
  CHECK_FALSE(RunReplay(*plan, {.target = "http2://x"}).ok());
}

TEST_CASE("Instant HTTP server: bad requests get OpenAI error bodies, streams can be held",
          "[bench][replay]") {
  auto server = InstantHttpServer::Start("127.0.0.1:0", std::chrono::milliseconds(300));
  REQUIRE(server.ok());
  CHECK_FALSE(InstantHttpServer::Start("not-an-address", std::chrono::milliseconds(0)).ok());
  CHECK_FALSE(InstantHttpServer::Start("127.0.0.1:99999", std::chrono::milliseconds(0)).ok());
  // Held streams: three requests of 4 tokens each stay open together for the hold.
  Trace trace;
  for (int i = 0; i < 3; ++i) {
    trace.requests.push_back({.arrival_s = 0.01 * i, .input_tokens = 8, .output_tokens = 4});
  }
  const auto tokenizer = DefaultTokenizer();
  auto prompts = PromptSynthesizer::Create(*tokenizer);
  REQUIRE(prompts.ok());
  ReplayOptions options{.target = absl::StrCat("http://127.0.0.1:", (*server)->port()),
                        .context = 2048};
  auto plan = PlanReplay(trace, options, **prompts);
  REQUIRE(plan.ok());
  auto records = RunReplay(*plan, options);
  REQUIRE(records.ok());
  for (const RequestRecord& r : *records) {
    INFO("request " << r.index << ": " << r.status << " " << r.error);
    CHECK(r.ok());
    CHECK(r.output_tokens() == 4);
    // The last token waited for the hold.
    CHECK(r.token_times_s.back() - r.token_times_s.front() >= 0.29);
  }
  CHECK((*server)->most_open_streams() == 3);
  CHECK((*server)->open_streams() == 0);
  // A bad max_tokens: HTTP 400 with the reason, recorded as an error.
  trace.requests.resize(1);
  plan = PlanReplay(trace, options, **prompts);
  REQUIRE(plan.ok());
  plan->requests[0].max_tokens = 0;  // What no trace row plans: the server must refuse it.
  records = RunReplay(*plan, options);
  REQUIRE(records.ok());
  REQUIRE(records->size() == 1);
  CHECK((*records)[0].status == "HTTP 400");
  CHECK_THAT((*records)[0].error, Catch::Contains("max_tokens"));
}

}  // namespace
}  // namespace tessera::bench
