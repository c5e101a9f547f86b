// Runs one client request across the workers: disaggregated (a prefill worker computes the
// prompt's KV and first token, a decode worker pulls the KV and streams the rest) when the
// router has both pools, colocated (one both-role worker) otherwise.
//
// Failures: a decode worker that cannot take the handoff is replaced by another while the
// prefill worker keeps holding the KV; a worker that dies mid-request makes the request
// resume on other workers from its prompt plus the tokens already streamed, so the client
// never sees a token twice; after `max_attempts` it ends with UNAVAILABLE. Every worker
// outcome feeds the registry's circuit breakers. A client cancel (the parent RPC, or the sink
// refusing an event) cancels every call the request has open, which frees its KV everywhere.
// Thread-safety: thread-safe; Run() is called concurrently, one request per task. The sink's
// Send() is called on the completion queues' threads and must not block.
#ifndef TESSERA_ENGINE_SERVER_DISPATCHER_H_
#define TESSERA_ENGINE_SERVER_DISPATCHER_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/runtime/step_loop.h"
#include "engine/sampling/sampling_params.h"
#include "engine/server/async_task.h"
#include "engine/server/channel_pool.h"
#include "engine/server/completion_queue_loop.h"
#include "engine/server/metrics.h"
#include "engine/server/parent_call.h"
#include "engine/server/standby_prefill_streams.h"
#include "engine/server/worker_registry.h"

namespace tessera::engine::server {

struct DispatchJob {
  std::string request_id;
  std::vector<int32_t> prompt;  // Validated by the caller: non-empty, fits the context.
  SamplingParams sampling;      // Validated by the caller.
  std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();
};

struct OutputEvent {
  std::vector<int32_t> token_ids;
  std::string text;
  std::string finish_reason;  // Non-empty on the last event only.
  Usage usage;                // On the last event.
};

class OutputSink {
 public:
  virtual ~OutputSink() = default;
  // False if the client is gone; the request is then cancelled.
  virtual bool Send(const OutputEvent& event) = 0;
};

struct DispatcherOptions {
  int32_t max_attempts = 3;          // Whole-request attempts (resuming after a dead worker).
  int32_t max_handoff_attempts = 3;  // Decode workers tried for one prefill's KV.
  absl::Duration request_timeout = absl::Minutes(10);  // When the client set no deadline.
  // Longest a prefill holds KV (on a stream opened ahead, up to 10 s more).
  absl::Duration handoff_lease = absl::Seconds(60);
  // Open each prefill worker's next stream ahead of its request (StandbyPrefillStreams).
  bool standby_prefill_streams = true;
};

class Dispatcher {
 public:
  // Declares its metric families (retries) in `metrics`.
  // Worker calls complete on `queues`' threads.
  Dispatcher(WorkerRegistry& registry, ChannelPool& channels, CompletionQueueLoop& queues,
             Metrics& metrics, DispatcherOptions options = {});

  // On OK the sink received the last event (with finish_reason). `parent` (may be null) is
  // the client's RPC: its deadline and cancellation reach every worker call. Never blocks:
  // it waits on workers by suspending, and resumes on the queue thread that completed the
  // wait. `job`, `sink` and `parent` must outlive the task.
  AsyncTask<absl::Status> Run(const DispatchJob& job, OutputSink& sink, ParentCall* parent);

  // Cancels the streams opened ahead of requests. Call before the queues shut down.
  void Close() { standby_.Close(); }

 private:
  struct Attempt;
  AsyncTask<absl::Status> RunDisaggregated(Attempt& attempt);
  AsyncTask<absl::Status> RunColocated(Attempt& attempt);

  WorkerRegistry& registry_;
  ChannelPool& channels_;
  CompletionQueueLoop& queues_;
  Metrics& metrics_;
  const DispatcherOptions options_;
  StandbyPrefillStreams standby_;
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_DISPATCHER_H_
