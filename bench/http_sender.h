// Replay requests to any OpenAI-compatible server: streaming POST /v1/completions with the
// prompt as text, max_tokens, temperature 0 and ignore_eos, read as server-sent events. Each
// event that carries text counts as one token arriving then (servers stream one token per
// event: llama.cpp's server, vLLM, Tessera); when the final usage reports more tokens than
// events, the rest count as arriving with the last event. Non-2xx responses are recorded as
// "HTTP <code>" with the body's error message.
//
// All transfers run on one thread through libcurl's multi interface, so thousands of open
// streams need no thread each.
// Thread-safety: Send() may be called from any thread.
#ifndef TESSERA_BENCH_HTTP_SENDER_H_
#define TESSERA_BENCH_HTTP_SENDER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "bench/replay_metrics.h"

namespace tessera::bench {

class HttpSender {
 public:
  using Clock = std::chrono::steady_clock;
  // `base_url`: "http://host:port" (the /v1/completions path is added). `on_done` runs on the
  // sender's thread when a request finished, successfully or not.
  HttpSender(std::string base_url, std::string model, double timeout_s, Clock::time_point base,
             std::function<void(bool error)> on_done);
  ~HttpSender();  // Waits for nothing: call after every request finished.

  // Starts `record`'s request (prompt text, max_tokens); `record` must outlive it.
  void Send(std::string prompt, RequestRecord& record);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_HTTP_SENDER_H_
