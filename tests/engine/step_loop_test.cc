#include "engine/runtime/step_loop.h"

#include <catch2/catch.hpp>
#include <map>

#include "tests/engine/model_fixture.h"

namespace tessera::engine {
namespace {

struct Result {
  std::string text;
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kNone;
  absl::Status error;
  Usage usage;
};

GenerationRequest Request(const std::string& text, SamplingParams sampling, Result* result) {
  const Tokenizer& tokenizer = *testing::DefaultModel().tokenizer;
  GenerationRequest r;
  r.prompt = tokenizer.Encode(text, false);
  r.sampling = std::move(sampling);
  r.on_event = [result](const StreamEvent& e) {
    result->text += e.text;
    result->tokens.insert(result->tokens.end(), e.token_ids.begin(), e.token_ids.end());
    if (e.finish_reason != FinishReason::kNone) {
      result->finish = e.finish_reason;
      result->error = e.error;
      result->usage = e.usage;
    }
  };
  return r;
}

std::unique_ptr<StepLoop> MakeLoop(StepLoopOptions options = {}) {
  LoadedModel& m = testing::DefaultModel();
  if (options.num_blocks == 0) options.num_blocks = 256;
  return StepLoop::Create(*m.model, *m.tokenizer, options).value();
}

void RunToCompletion(StepLoop& loop) {
  for (int i = 0; loop.HasWork() && i < 10000; ++i) REQUIRE(loop.Step().ok());
  REQUIRE_FALSE(loop.HasWork());
}

SamplingParams Greedy(int max_tokens) {
  SamplingParams p;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

TEST_CASE("StepLoop: requests batched together generate what they generate alone",
          "[engine][runtime]") {
  const std::vector<std::string> prompts = {"The capital of France is", "def fibonacci(n):",
                                            "Once upon a time, in a small village,", "1, 2, 3, 4,"};
  std::vector<Result> alone(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto loop = MakeLoop();
    REQUIRE(loop->Add(Request(prompts[i], Greedy(12), &alone[i])).ok());
    RunToCompletion(*loop);
  }
  // Together, with a small step budget so prompts are chunked, and two requests arriving
  // while the others decode.
  StepLoopOptions options;
  options.planner.max_tokens_per_step = 6;
  auto loop = MakeLoop(options);
  std::vector<Result> together(prompts.size());
  REQUIRE(loop->Add(Request(prompts[0], Greedy(12), &together[0])).ok());
  REQUIRE(loop->Add(Request(prompts[1], Greedy(12), &together[1])).ok());
  for (int i = 0; i < 5; ++i) REQUIRE(loop->Step().ok());
  REQUIRE(loop->Add(Request(prompts[2], Greedy(12), &together[2])).ok());
  REQUIRE(loop->Step().ok());
  REQUIRE(loop->Add(Request(prompts[3], Greedy(12), &together[3])).ok());
  RunToCompletion(*loop);
  for (size_t i = 0; i < prompts.size(); ++i) {
    INFO("prompt " << prompts[i]);
    CHECK(together[i].tokens == alone[i].tokens);
    CHECK(together[i].text == alone[i].text);
    CHECK(together[i].finish == FinishReason::kLength);
    CHECK(together[i].usage.completion_tokens == 12);
    CHECK(together[i].usage.prompt_tokens > 0);
  }
  CHECK(loop->allocator().num_free() == loop->allocator().num_blocks());
}

TEST_CASE("StepLoop: the same seed gives the same text", "[engine][runtime]") {
  auto generate = [](uint64_t seed) {
    SamplingParams p;
    p.temperature = 0.9f;
    p.top_p = 0.95f;
    p.seed = seed;
    p.max_tokens = 24;
    p.ignore_eos = true;
    Result r;
    auto loop = MakeLoop();
    REQUIRE(loop->Add(Request("Write a short poem about the sea.", p, &r)).ok());
    RunToCompletion(*loop);
    return r.text;
  };
  CHECK(generate(11) == generate(11));
  CHECK(generate(11) != generate(12));
}

TEST_CASE("StepLoop: a stop string ends the text before it", "[engine][runtime]") {
  Result full;
  {
    auto loop = MakeLoop();
    REQUIRE(loop->Add(Request("The capital of France is", Greedy(24), &full)).ok());
    RunToCompletion(*loop);
  }
  REQUIRE(full.text.size() > 12);
  const std::string stop = full.text.substr(8, 4);
  SamplingParams p = Greedy(24);
  p.stop = {stop};
  Result stopped;
  auto loop = MakeLoop();
  REQUIRE(loop->Add(Request("The capital of France is", p, &stopped)).ok());
  RunToCompletion(*loop);
  CHECK(stopped.finish == FinishReason::kStop);
  CHECK(stopped.text == full.text.substr(0, full.text.find(stop)));
}

TEST_CASE("StepLoop: bad requests are refused and the others carry on", "[engine][runtime]") {
  auto loop = MakeLoop();
  Result good;
  REQUIRE(loop->Add(Request("Hello", Greedy(4), &good)).ok());

  Result ignored;
  GenerationRequest empty = Request("", Greedy(4), &ignored);
  CHECK(loop->Add(std::move(empty)).status().message() == "prompt is empty");
  GenerationRequest bad_token = Request("Hello", Greedy(4), &ignored);
  bad_token.prompt.push_back(1 << 20);
  CHECK(loop->Add(std::move(bad_token)).status().message().find("prompt token 1 has id 1048576") ==
        0);
  SamplingParams bad = Greedy(4);
  bad.top_p = 2;
  CHECK(loop->Add(Request("Hello", bad, &ignored)).status().message().find("top_p") == 0);
  GenerationRequest too_long = Request("Hello", Greedy(4), &ignored);
  too_long.prompt.assign(8192, 100);
  CHECK(absl::IsInvalidArgument(loop->Add(std::move(too_long)).status()));

  RunToCompletion(*loop);
  CHECK(good.finish == FinishReason::kLength);
  CHECK(ignored.finish == FinishReason::kNone);
}

TEST_CASE("StepLoop: cancelling frees the request's blocks and tells it", "[engine][runtime]") {
  auto loop = MakeLoop();
  Result r;
  int64_t id = loop->Add(Request("Tell me a long story.", Greedy(100), &r)).value();
  for (int i = 0; i < 3; ++i) REQUIRE(loop->Step().ok());
  CHECK(loop->allocator().num_free() < loop->allocator().num_blocks());
  CHECK(loop->Cancel(id));
  CHECK_FALSE(loop->Cancel(id));
  CHECK(r.finish == FinishReason::kCancelled);
  CHECK_FALSE(loop->HasWork());
  CHECK(loop->allocator().num_free() == loop->allocator().num_blocks());
}

TEST_CASE("StepLoop: a request the KV cache cannot hold fails alone with ResourceExhausted",
          "[engine][runtime]") {
  StepLoopOptions options;
  options.num_blocks = 2;  // 32 positions.
  auto loop = MakeLoop(options);
  Result r;
  REQUIRE(loop->Add(Request("A prompt of a few tokens", Greedy(100), &r)).ok());
  RunToCompletion(*loop);
  CHECK(r.finish == FinishReason::kError);
  CHECK(absl::IsResourceExhausted(r.error));
  CHECK(loop->allocator().num_free() == 2);
}

}  // namespace
}  // namespace tessera::engine
