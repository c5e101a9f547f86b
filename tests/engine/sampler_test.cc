#include "engine/sampling/sampler.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "engine/sampling/stop_matcher.h"

namespace tessera::engine {
namespace {

int32_t SampleOnce(const SamplingParams& params, std::vector<float> logits,
                   std::vector<int32_t> prompt = {}) {
  Sampler sampler(params, prompt);
  return sampler.Sample(logits);
}

TEST_CASE("Sampler: greedy takes the largest logit", "[engine][sampling]") {
  SamplingParams greedy;
  CHECK(SampleOnce(greedy, {0.1f, 3.0f, 2.9f}) == 1);
  CHECK(SampleOnce(greedy, {-5.0f, -4.0f, -4.5f}) == 1);
}

TEST_CASE("Sampler: the same seed gives the same tokens, another seed others",
          "[engine][sampling]") {
  SamplingParams p;
  p.temperature = 1.0f;
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = std::sin(i * 1.3f);
  auto draw = [&](uint64_t seed) {
    p.seed = seed;
    Sampler sampler(p, {});
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) {
      std::vector<float> copy = logits;
      out.push_back(sampler.Sample(copy));
    }
    return out;
  };
  CHECK(draw(7) == draw(7));
  CHECK(draw(7) != draw(8));
}

TEST_CASE("Sampler: temperature sampling follows the softmax", "[engine][sampling]") {
  SamplingParams p;
  p.temperature = 0.5f;
  p.seed = 1;
  Sampler sampler(p, {});
  const std::vector<float> logits = {1.0f, 0.5f, 0.0f};
  std::vector<int> counts(3);
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    std::vector<float> copy = logits;
    counts[sampler.Sample(copy)]++;
  }
  double z = std::exp(2.0) + std::exp(1.0) + 1.0;
  CHECK(counts[0] / double(n) == Approx(std::exp(2.0) / z).margin(0.015));
  CHECK(counts[1] / double(n) == Approx(std::exp(1.0) / z).margin(0.015));
  CHECK(counts[2] / double(n) == Approx(1.0 / z).margin(0.015));
}

TEST_CASE("Sampler: top-k, top-p and min-p cut the tail", "[engine][sampling]") {
  const std::vector<float> logits = {2.0f, 1.9f, 1.8f, -1.0f, -3.0f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 3;
  for (int i = 0; i < 300; ++i) {
    p.seed = i;
    p.top_k = 1;
    CHECK(SampleOnce(p, logits) == 0);
    p.top_k = 0;
    p.top_p = 0.3f;  // The top token alone has ~0.36 of the mass.
    CHECK(SampleOnce(p, logits) == 0);
    p.top_p = 1.0f;
    p.min_p = 0.2f;  // exp(-3) / 1 < 0.2: tokens 3 and 4 are out.
    CHECK(SampleOnce(p, logits) <= 2);
    p.min_p = 0.0f;
  }
}

TEST_CASE("Sampler: penalties discourage what was already said", "[engine][sampling]") {
  SamplingParams p;
  p.repetition_penalty = 1.2f;
  // Token 0 is in the prompt: 2.0 / 1.2 < 1.9, so greedy now prefers token 1.
  CHECK(SampleOnce(p, {2.0f, 1.9f}, {0}) == 1);
  CHECK(SampleOnce(p, {2.0f, 1.9f}, {5}) == 0);
  // Negative logits are multiplied, pushing them further down.
  CHECK(SampleOnce(p, {-1.0f, -1.1f}, {0}) == 1);

  SamplingParams f;
  f.frequency_penalty = 0.5f;
  Sampler sampler(f, {});
  sampler.Accept(0);
  std::vector<float> logits = {2.0f, 1.6f};
  CHECK(sampler.Sample(logits) == 1);  // 2.0 - 0.5 = 1.5 < 1.6.
  SamplingParams presence;
  presence.presence_penalty = 0.3f;
  Sampler twice(presence, {});
  twice.Accept(0);
  twice.Accept(0);  // Presence counts once, however often the token appeared.
  std::vector<float> close = {2.0f, 1.6f};  // Once: 1.7 > 1.6; counted twice it would be 1.4.
  CHECK(twice.Sample(close) == 0);
}

TEST_CASE("ValidateSamplingParams: each bad field is named", "[engine][sampling]") {
  auto message = [](auto mutate) {
    SamplingParams p;
    mutate(p);
    return std::string(ValidateSamplingParams(p).message());
  };
  CHECK(ValidateSamplingParams(SamplingParams{}).ok());
  CHECK(message([](SamplingParams& p) { p.temperature = -1; }).find("temperature") == 0);
  CHECK(message([](SamplingParams& p) { p.top_p = 0; }).find("top_p") == 0);
  CHECK(message([](SamplingParams& p) { p.top_p = 1.5f; }).find("top_p") == 0);
  CHECK(message([](SamplingParams& p) { p.top_k = -2; }).find("top_k") == 0);
  CHECK(message([](SamplingParams& p) { p.min_p = 1; }).find("min_p") == 0);
  CHECK(message([](SamplingParams& p) { p.max_tokens = 0; }).find("max_tokens") == 0);
  CHECK(message([](SamplingParams& p) { p.repetition_penalty = 0; }).find("repetition_penalty") ==
        0);
  CHECK(message([](SamplingParams& p) { p.temperature = NAN; }).find("temperature") == 0);
  CHECK(message([](SamplingParams& p) { p.stop = {"ok", ""}; }).find("stop[1]") == 0);
}

TEST_CASE("StopMatcher: stop strings end the text and are never shown", "[engine][sampling]") {
  StopMatcher m({"\n\nUser:", "###"});
  std::string shown;
  shown += m.Push("Hello");
  shown += m.Push(" there\n");  // "\n" could start a stop string: held back.
  CHECK(shown == "Hello there");
  shown += m.Push("\nUs");
  CHECK(shown == "Hello there");
  shown += m.Push("er: next");
  CHECK(m.stopped());
  CHECK(shown == "Hello there");
  CHECK(m.Push("more").empty());
}

TEST_CASE("StopMatcher: held-back text that turns out harmless is released", "[engine][sampling]") {
  StopMatcher m({"###"});
  CHECK(m.Push("a#") == "a");
  CHECK(m.Push("#b") == "##b");
  CHECK(m.Push("#") == "");
  CHECK(m.Flush() == "#");
  CHECK_FALSE(m.stopped());
}

TEST_CASE("StopMatcher: the earliest of several stop strings wins", "[engine][sampling]") {
  StopMatcher m({"cd", "b"});
  CHECK(m.Push("abcd") == "a");
  CHECK(m.stopped());
}

}  // namespace
}  // namespace tessera::engine
