#include "engine/runtime/step_loop.h"

#include <catch2/catch.hpp>
#include <cstring>
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
  CHECK(loop->block_manager().unreferenced() == loop->block_manager().device_blocks());
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
  CHECK(loop->block_manager().unreferenced() < loop->block_manager().device_blocks());
  CHECK(loop->Cancel(id));
  CHECK_FALSE(loop->Cancel(id));
  CHECK(r.finish == FinishReason::kCancelled);
  CHECK_FALSE(loop->HasWork());
  CHECK(loop->block_manager().unreferenced() == loop->block_manager().device_blocks());
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
  CHECK(loop->block_manager().unreferenced() == 2);
}

}  // namespace
}  // namespace tessera::engine

namespace tessera::engine {
namespace {

SamplingParams Seeded(int max_tokens) {
  SamplingParams p = Greedy(max_tokens);
  p.temperature = 0.9f;
  p.top_p = 0.95f;
  p.seed = 1234;
  p.repetition_penalty = 1.1f;
  return p;
}

TEST_CASE("StepLoop: a resumed request continues exactly where the first run stopped",
          "[engine][runtime]") {
  for (const SamplingParams& sampling : {Greedy(14), Seeded(14)}) {
    INFO("temperature " << sampling.temperature);
    Result whole;
    auto loop = MakeLoop();
    REQUIRE(loop->Add(Request("Tell me a story about a dragon:", sampling, &whole)).ok());
    RunToCompletion(*loop);
    REQUIRE(whole.tokens.size() == 14);

    Result resumed;
    GenerationRequest r = Request("Tell me a story about a dragon:", sampling, &resumed);
    r.generated.assign(whole.tokens.begin(), whole.tokens.begin() + 5);
    auto second = MakeLoop();
    REQUIRE(second->Add(std::move(r)).ok());
    RunToCompletion(*second);
    CHECK(resumed.tokens == std::vector<int32_t>(whole.tokens.begin() + 5, whole.tokens.end()));
    CHECK(resumed.usage.completion_tokens == 14);
    // The resumed text is the tail of the whole text.
    REQUIRE(resumed.text.size() <= whole.text.size());
    CHECK(whole.text.substr(whole.text.size() - resumed.text.size()) == resumed.text);
  }
}

TEST_CASE("StepLoop: KV handed from a prefill-only request to an importing one decodes the same",
          "[engine][runtime]") {
  const std::string prompt = "The three primary colours are";
  Result whole;
  {
    auto loop = MakeLoop();
    REQUIRE(loop->Add(Request(prompt, Greedy(10), &whole)).ok());
    RunToCompletion(*loop);
  }
  // Prefill side, with small chunks so the prompt takes several steps.
  StepLoopOptions small_steps;
  small_steps.planner.max_tokens_per_step = 4;
  auto prefill = MakeLoop(small_steps);
  Result first;
  GenerationRequest pr = Request(prompt, Greedy(10), &first);
  pr.prefill_only = true;
  const int32_t layers = prefill->model().config().num_layers;
  std::vector<int32_t> ready(layers, 0);
  bool monotonic = true;
  pr.on_kv_ready = [&](int32_t layer, int32_t positions, std::span<const kvcache::BlockId>) {
    if (positions < ready[layer]) monotonic = false;
    ready[layer] = positions;
  };
  const int32_t prompt_size = static_cast<int32_t>(pr.prompt.size());
  int64_t prefill_id = prefill->Add(std::move(pr)).value();
  RunToCompletion(*prefill);
  CHECK(monotonic);
  for (int32_t layer = 0; layer < layers; ++layer) CHECK(ready[layer] == prompt_size);
  CHECK(first.finish == FinishReason::kHandoff);
  REQUIRE(first.tokens.size() == 1);
  CHECK(first.tokens[0] == whole.tokens[0]);
  CHECK(prefill->held() == 1);
  std::span<const kvcache::BlockId> source = prefill->HeldBlocks(prefill_id);
  REQUIRE_FALSE(source.empty());

  // Decode side: import the prompt's KV, then decode from the first token on.
  auto decode = MakeLoop();
  Result rest;
  GenerationRequest dr = Request(prompt, Greedy(10), &rest);
  ImportSlot slot = decode->AddImporting(std::move(dr)).value();
  CHECK(slot.positions == prompt_size);
  REQUIRE(slot.blocks.size() == source.size());
  CHECK_FALSE(decode->HasWork());  // Not schedulable until the import finishes.
  const kvcache::KvCacheShape& shape = prefill->cache().shape();
  const size_t block_bytes = static_cast<size_t>(shape.block_elements()) * sizeof(uint16_t);
  for (int32_t layer = 0; layer < layers; ++layer) {
    for (size_t b = 0; b < source.size(); ++b) {
      std::memcpy(decode->cache().keys(layer, slot.blocks[b]), prefill->cache().keys(layer, source[b]),
                  block_bytes);
      std::memcpy(decode->cache().values(layer, slot.blocks[b]),
                  prefill->cache().values(layer, source[b]), block_bytes);
    }
  }
  REQUIRE(decode->FinishImport(slot.id, first.tokens).ok());
  RunToCompletion(*decode);
  CHECK(rest.tokens == std::vector<int32_t>(whole.tokens.begin() + 1, whole.tokens.end()));
  CHECK(decode->block_manager().unreferenced() == decode->block_manager().device_blocks());

  CHECK(prefill->block_manager().unreferenced() < prefill->block_manager().device_blocks());
  CHECK(prefill->ReleaseHeld(prefill_id));
  CHECK_FALSE(prefill->ReleaseHeld(prefill_id));
  CHECK(prefill->block_manager().unreferenced() == prefill->block_manager().device_blocks());
}

TEST_CASE("StepLoop: a prefill-only request that ends at its first token holds nothing",
          "[engine][runtime]") {
  auto loop = MakeLoop();
  Result result;
  GenerationRequest r = Request("Hello", Greedy(1), &result);
  r.prefill_only = true;
  REQUIRE(loop->Add(std::move(r)).ok());
  RunToCompletion(*loop);
  CHECK(result.finish == FinishReason::kLength);
  CHECK(loop->held() == 0);
  CHECK(loop->block_manager().unreferenced() == loop->block_manager().device_blocks());
}

TEST_CASE("StepLoop: cancelling an import frees its reserved blocks", "[engine][runtime]") {
  auto loop = MakeLoop();
  Result result;
  GenerationRequest r = Request("Hello there, friend", Greedy(4), &result);
  ImportSlot slot = loop->AddImporting(std::move(r)).value();
  CHECK(loop->block_manager().unreferenced() < loop->block_manager().device_blocks());
  CHECK(loop->Cancel(slot.id, absl::UnavailableError("transfer failed")));
  CHECK(result.finish == FinishReason::kError);
  CHECK(result.error.code() == absl::StatusCode::kUnavailable);
  CHECK(loop->block_manager().unreferenced() == loop->block_manager().device_blocks());
  CHECK(loop->FinishImport(slot.id, std::vector<int32_t>{42}).code() == absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera::engine

namespace tessera::engine {
namespace {

const std::string kSharedPrefix =
    "You are a helpful assistant for a bakery. The bakery opens at seven in the morning and "
    "closes at six in the evening. It sells bread, croissants, cakes and coffee. Answer "
    "briefly and politely. Customer question: ";

std::vector<Result> RunEach(StepLoop& loop, const std::vector<std::string>& prompts, int tokens) {
  std::vector<Result> results(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    REQUIRE(loop.Add(Request(prompts[i], Greedy(tokens), &results[i])).ok());
    RunToCompletion(loop);
    REQUIRE(results[i].finish == FinishReason::kLength);
  }
  return results;
}

TEST_CASE("StepLoop: prefix caching skips cached blocks and changes no token", "[engine][kvcache]") {
  const std::vector<std::string> prompts = {kSharedPrefix + "When do you open?",
                                            kSharedPrefix + "Do you sell coffee?",
                                            kSharedPrefix + "When do you open?"};
  StepLoopOptions off;
  off.prefix_caching = false;
  auto plain = MakeLoop(off);
  std::vector<Result> expected = RunEach(*plain, prompts, 12);
  CHECK(plain->block_manager().stats().device_hits == 0);

  auto cached = MakeLoop();
  std::vector<Result> got = RunEach(*cached, prompts, 12);
  const int32_t prefix_blocks =
      static_cast<int32_t>(testing::DefaultModel().tokenizer->Encode(kSharedPrefix, false).size()) / 16;
  REQUIRE(prefix_blocks >= 2);
  CHECK(got[0].usage.cached_tokens == 0);
  CHECK(got[1].usage.cached_tokens >= (prefix_blocks - 1) * 16);
  // The repeated prompt reuses everything but the block with its last token.
  CHECK(got[2].usage.cached_tokens == (got[2].usage.prompt_tokens - 1) / 16 * 16);
  for (size_t i = 0; i < prompts.size(); ++i) {
    INFO("prompt " << i);
    CHECK(got[i].tokens == expected[i].tokens);
    CHECK(got[i].text == expected[i].text);
  }
  CHECK(cached->block_manager().stats().device_hits > 0);
  CHECK(cached->block_manager().referenced() == 0);
}

TEST_CASE("StepLoop: blocks offloaded to the host tier come back and give the same tokens",
          "[engine][kvcache]") {
  const std::string first = kSharedPrefix + "What cakes do you have?";
  StepLoopOptions off;
  off.prefix_caching = false;
  auto plain = MakeLoop(off);
  std::vector<Result> expected = RunEach(*plain, {first}, 10);

  StepLoopOptions tiered;
  tiered.num_blocks = 6;  // 96 positions: one request at a time.
  tiered.host_blocks = 32;
  auto loop = MakeLoop(tiered);
  RunEach(*loop, {first}, 10);
  // Unrelated requests need every device block, which pushes the cached prefix to the host.
  RunEach(*loop, {"Write a short poem about the sea and the wind over it, with rhymes.",
                  "List the planets of the solar system in order from the sun, with one fact each."},
          64);
  CHECK(loop->block_manager().stats().offloaded > 0);
  std::vector<Result> again = RunEach(*loop, {first}, 10);
  CHECK(loop->block_manager().stats().host_hits > 0);
  CHECK(loop->block_manager().stats().restored > 0);
  CHECK(again[0].usage.cached_tokens > 0);
  CHECK(again[0].tokens == expected[0].tokens);
  CHECK(loop->kv_bytes_moved() > 0);
  CHECK(loop->block_manager().referenced() == 0);
}

TEST_CASE("StepLoop: under memory pressure sequences are preempted, never failed, and finish "
          "with the tokens they produce alone", "[engine][kvcache]") {
  const std::vector<std::string> prompts = {
      "Explain why the sky is blue.", "Describe a busy train station at rush hour.",
      "What makes a good cup of tea?", "Tell me about the history of the bicycle.",
      "How do bees make honey?", "Why do cats purr?"};
  std::vector<Result> alone;
  {
    auto loop = MakeLoop();
    alone = RunEach(*loop, prompts, 40);
  }
  StepLoopOptions tight;
  tight.num_blocks = 12;  // 192 positions for six sequences of ~50 each.
  tight.prefix_caching = false;
  auto loop = MakeLoop(tight);
  std::vector<Result> together(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    REQUIRE(loop->Add(Request(prompts[i], Greedy(40), &together[i])).ok());
  }
  RunToCompletion(*loop);
  CHECK(loop->preemptions() > 0);
  for (size_t i = 0; i < prompts.size(); ++i) {
    INFO("prompt " << i);
    CHECK(together[i].finish == FinishReason::kLength);
    CHECK(together[i].tokens == alone[i].tokens);
  }
  CHECK(loop->block_manager().referenced() == 0);

  SECTION("and with swapping to the host tier instead of recomputing") {
    StepLoopOptions swapping = tight;
    swapping.host_blocks = 64;
    swapping.preemption = StepLoopOptions::Preemption::kSwap;
    auto swap_loop = MakeLoop(swapping);
    std::vector<Result> swapped(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      REQUIRE(swap_loop->Add(Request(prompts[i], Greedy(40), &swapped[i])).ok());
    }
    RunToCompletion(*swap_loop);
    CHECK(swap_loop->preemptions() > 0);
    CHECK(swap_loop->block_manager().stats().swapped_out > 0);
    CHECK(swap_loop->block_manager().stats().swapped_in ==
          swap_loop->block_manager().stats().swapped_out);
    for (size_t i = 0; i < prompts.size(); ++i) {
      INFO("prompt " << i);
      CHECK(swapped[i].tokens == alone[i].tokens);
    }
    CHECK(swap_loop->block_manager().referenced() == 0);
    CHECK(swap_loop->block_manager().swapped_host() == 0);
  }
}

}  // namespace
}  // namespace tessera::engine
