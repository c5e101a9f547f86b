// Open-loop trace replay. Each request is sent at its (scaled) arrival time whether or not
// earlier ones have finished, as real users arrive, so an overloaded server shows up as
// growing latency rather than as a slower sender.
//
// Planning turns a trace into requests:
// - arrival times are divided by time_scale and cut to max_requests and duration;
// - lengths are multiplied by length_scale (at least 1 token), then clipped to the context:
//   a prompt that would leave no room for its response loses its tail; every change is
//   counted in the plan's notes;
// - prompts are token ids of single-token words (PromptSynthesizer), so their length is exact;
//   Mooncake's prompt blocks (scaled to length_scale * 512 tokens) become shared text;
// - max_tokens is the recorded response length, with EOS ignored.
// Running sends them to the target, `grpc://host:port` (Tessera's tessera.v1.Inference,
// prompts as token ids) or `http://host:port` (any OpenAI-compatible server: streaming
// /v1/completions, prompts as text; see HttpSender), and records every token's arrival.
// Thread-safety: RunReplay is thread-compatible; it uses gRPC's threads internally.
#ifndef TESSERA_BENCH_REPLAY_H_
#define TESSERA_BENCH_REPLAY_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/prompt_synth.h"
#include "bench/replay_metrics.h"
#include "bench/trace.h"

namespace tessera::bench {

struct ReplayOptions {
  std::string target = "";    // grpc://host:port or http://host:port
  std::string model = "";     // Model name sent with each request (empty: the server's default).
  double time_scale = 1.0;    // > 1 replays faster.
  int64_t max_requests = 0;   // 0: all.
  double duration_s = 0;      // 0: all; else only requests due within this (after scaling).
  double length_scale = 1.0;  // Multiplies request and response lengths.
  int32_t context = 0;        // The server's context in tokens; lengths are clipped to it.
  // Varies every prompt's text (and Mooncake's blocks) while keeping their lengths and
  // sharing: replays with different salts do not hit each other's prefix cache.
  uint64_t prompt_salt = 0;
  double request_timeout_s = 600;
  int connections = 8;  // gRPC connections requests are spread over.
  // Called about twice a second while running, with the records so far (for a progress bar).
  std::function<void(int64_t sent, int64_t done, int64_t errors)> on_progress = nullptr;
};

struct PlannedRequest {
  int64_t index = 0;  // In the trace.
  double at_s = 0;    // When to send, from the start.
  std::vector<int32_t> prompt;
  std::string text;  // HTTP targets only: the prompt's text (it encodes back to `prompt`).
  int64_t max_tokens = 0;
};

struct ReplayPlan {
  std::vector<PlannedRequest> requests;
  std::vector<std::string> notes;  // How the trace was scaled, clipped or cut.
};

absl::StatusOr<ReplayPlan> PlanReplay(const Trace& trace, const ReplayOptions& options,
                                      const PromptSynthesizer& prompts);

// Sends every planned request at its time and waits for all to finish (or time out).
absl::StatusOr<std::vector<RequestRecord>> RunReplay(const ReplayPlan& plan,
                                                     const ReplayOptions& options);

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_REPLAY_H_
