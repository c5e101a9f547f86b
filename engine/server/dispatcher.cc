#include "engine/server/dispatcher.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/server/proto_convert.h"
#include "engine/server/worker_calls.h"
#include "tessera/internal/v1/worker.grpc.pb.h"

namespace tessera::engine::server {
namespace {

using tessera::internal::v1::DecodeEvent;
using tessera::internal::v1::DecodeRequest;
using tessera::internal::v1::PrefillClientMessage;
using tessera::internal::v1::PrefillServerMessage;
using tessera::internal::v1::TokenEvent;
using Clock = std::chrono::steady_clock;

// Whether a worker call's failure is the worker's (try elsewhere and count it against the
// worker) rather than the request's own.
bool WorkerFault(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kNotFound:  // A handoff the prefill worker no longer has.
    case absl::StatusCode::kCancelled:  // The worker shut down under the call.
      return true;
    default:
      return false;
  }
}

bool Retryable(absl::StatusCode code) {
  return WorkerFault(code) || code == absl::StatusCode::kResourceExhausted;
}

}  // namespace

struct Dispatcher::Attempt {
  const DispatchJob& job;
  OutputSink& sink;
  ParentCall* parent;
  absl::Duration timeout;
  int32_t index = 0;
  std::vector<int32_t> generated;  // Streamed to the client so far.
  bool finished = false;
  bool client_gone = false;
  double ttft_ms = 0;
  int32_t prefill_cached_tokens = 0;  // Reported by a prefill worker.
  // A prefill stream opened ahead failed this request: its later attempts open their own.
  bool skip_standby = false;

  std::unique_ptr<grpc::ClientContext> NewContext(absl::Duration cap) const {
    auto context = std::make_unique<grpc::ClientContext>();
    auto deadline = std::chrono::system_clock::now() + absl::ToChronoMilliseconds(cap);
    if (parent != nullptr) deadline = std::min(deadline, parent->deadline());
    context->set_deadline(deadline);
    return context;
  }

  tessera::internal::v1::WorkRequest Work(const std::string& id) const {
    tessera::internal::v1::WorkRequest work;
    work.set_request_id(id);
    for (int32_t t : job.prompt) work.add_prompt(t);
    for (int32_t t : generated) work.add_generated(t);
    SamplingToProto(job.sampling, work.mutable_sampling());
    return work;
  }

  // Forwards a worker's event to the client. False if the client is gone.
  bool Emit(const TokenEvent& event) {
    OutputEvent out;
    out.token_ids.assign(event.token_ids().begin(), event.token_ids().end());
    out.text = event.text();
    if (ttft_ms == 0 && !out.token_ids.empty()) {
      ttft_ms = std::chrono::duration<double, std::milli>(Clock::now() - job.arrival).count();
    }
    generated.insert(generated.end(), out.token_ids.begin(), out.token_ids.end());
    if (!event.finish_reason().empty()) {
      out.finish_reason = event.finish_reason();
      out.usage.prompt_tokens = static_cast<int32_t>(job.prompt.size());
      out.usage.completion_tokens = static_cast<int32_t>(generated.size());
      out.usage.cached_tokens = std::max(event.usage().cached_tokens(), prefill_cached_tokens);
      out.usage.time_to_first_token_ms = ttft_ms;
      finished = true;
      final_event = Clock::now();
    }
    if (out.token_ids.empty() && out.text.empty() && out.finish_reason.empty()) return true;
    if (!sink.Send(out)) client_gone = true;
    if (finished) final_sent = Clock::now();
    return !client_gone;
  }

  // Once the last event is delivered, a cancel no longer concerns the request.
  bool Cancelled() const {
    return client_gone || (!finished && parent != nullptr && parent->cancelled());
  }

  // When the first worker call of the request was on its way, and when the last worker event
  // arrived and was passed on: the router's latency is what lies outside the worker's time.
  Clock::time_point dispatched{};
  Clock::time_point final_event{};
  Clock::time_point final_sent{};  // Handed to the client's transport.
  void Dispatched() {
    if (dispatched == Clock::time_point{}) dispatched = Clock::now();
  }

  // Time spent waiting on workers (reads and call completion), which the router's busy time
  // excludes.
  Clock::duration waited{0};
  template <typename Inner>
  struct TimedAwaiter {
    Inner inner;
    Clock::duration& waited;
    Clock::time_point start{};
    bool await_ready() { return inner.await_ready(); }
    template <typename Handle>
    decltype(auto) await_suspend(Handle waiter) {
      start = Clock::now();
      return inner.await_suspend(waiter);
    }
    decltype(auto) await_resume() {
      if (start != Clock::time_point{}) waited += Clock::now() - start;
      return inner.await_resume();
    }
  };
  template <typename Inner>
  TimedAwaiter<Inner> Wait(Inner inner) {
    return TimedAwaiter<Inner>{std::move(inner), waited};
  }
};

Dispatcher::Dispatcher(WorkerRegistry& registry, ChannelPool& channels,
                       CompletionQueueLoop& queues, Metrics& metrics, DispatcherOptions options)
    : registry_(registry),
      channels_(channels),
      queues_(queues),
      metrics_(metrics),
      options_(options),
      standby_(channels, queues, options.handoff_lease) {
  if (!options_.standby_prefill_streams) standby_.Close();
  metrics_.Declare("tessera_router_prefill_streams_total", Metrics::Type::kCounter,
                   "Prefill calls by how their stream was opened: ahead of the request "
                   "(standby) or for it (new).");
  metrics_.Declare("tessera_request_retries_total", Metrics::Type::kCounter,
                   "Requests restarted on other workers (from the prompt plus the tokens "
                   "already streamed) after a worker failed, by the error.");
  metrics_.Declare("tessera_handoff_retries_total", Metrics::Type::kCounter,
                   "KV handoffs retried on another decode worker.");
  const std::vector<double> buckets = {25e-6, 50e-6, 75e-6, 100e-6, 125e-6, 150e-6, 175e-6,
                                       200e-6, 250e-6, 300e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3,
                                       50e-3};
  metrics_.Declare("tessera_router_overhead_seconds", Metrics::Type::kHistogram,
                   "Latency the router adds to a successful request: from its arrival until the "
                   "first worker call is on its way (validation, tokenization, worker choice, "
                   "call setup), plus from the worker's last event until it is handed to the "
                   "client's transport. Work done while a worker computes (opening the decode "
                   "call, forwarding tokens) adds no latency and is in "
                   "tessera_router_busy_seconds.",
                   buckets);
  metrics_.Declare("tessera_router_busy_seconds", Metrics::Type::kHistogram,
                   "Router time per successful request not spent waiting on workers: "
                   "validation, tokenization, worker choice, call setup, forwarding every "
                   "message.",
                   buckets);
}

AsyncTask<absl::Status> Dispatcher::Run(const DispatchJob& job, OutputSink& sink,
                                        ParentCall* parent) {
  // Between worker calls too, this task may still start operations on the queues.
  CompletionQueueLoop::LiveCall live(queues_);
  Attempt attempt{.job = job, .sink = sink, .parent = parent, .timeout = options_.request_timeout,
                  .index = 0, .generated = {}, .finished = false, .client_gone = false,
                  .ttft_ms = 0};
  absl::Status last = absl::UnavailableError("no attempt was made");
  for (attempt.index = 0; attempt.index < options_.max_attempts; ++attempt.index) {
    const bool disaggregated =
        registry_.Has(WorkerNeed::kPrefill) && registry_.Has(WorkerNeed::kDecode);
    if (!disaggregated && !registry_.Has(WorkerNeed::kColocated)) {
      co_return absl::UnavailableError(
          "no worker can serve: the router has neither a prefill and a decode worker nor a "
          "colocated (--role both) worker");
    }
    if (disaggregated) {
      last = co_await RunDisaggregated(attempt);
    } else {
      last = co_await RunColocated(attempt);
    }
    if (last.ok()) {
      const Clock::time_point now = Clock::now();
      metrics_.Observe("tessera_router_busy_seconds", {},
                       std::chrono::duration<double>(now - job.arrival - attempt.waited).count());
      metrics_.Observe("tessera_router_overhead_seconds", {},
                       std::chrono::duration<double>((attempt.dispatched - job.arrival) +
                                                     (attempt.final_sent - attempt.final_event))
                           .count());
      co_return last;
    }
    if (attempt.Cancelled()) co_return absl::CancelledError("the client cancelled the request");
    if (!Retryable(last.code())) co_return last;
    metrics_.Increment("tessera_request_retries_total",
                       {{"code", absl::StatusCodeToString(last.code())}});
  }
  if (last.code() == absl::StatusCode::kResourceExhausted) co_return last;
  co_return absl::UnavailableError(absl::StrCat("request ", job.request_id, " failed after ",
                                                options_.max_attempts, " attempts; last: ",
                                                last.message()));
}

AsyncTask<absl::Status> Dispatcher::RunColocated(Attempt& attempt) {
  absl::StatusOr<WorkerLease> worker = registry_.Acquire(
      WorkerNeed::kColocated, static_cast<int64_t>(attempt.job.prompt.size()));
  if (!worker.ok()) co_return worker.status();
  auto stub = tessera::internal::v1::Worker::NewStub(channels_.Get(worker->call_address()));
  DecodeRequest request;
  *request.mutable_work() = attempt.Work(absl::StrCat(attempt.job.request_id, "/", attempt.index));
  DecodeCall call(*stub, queues_, attempt.NewContext(attempt.timeout),
                  attempt.parent, request);
  attempt.Dispatched();
  DecodeEvent event;
  while (co_await attempt.Wait(call.Read(&event))) {
    // The worker's part is over before the client hears the end.
    if (event.has_tokens() && !event.tokens().finish_reason().empty()) worker->Release();
    if (event.has_tokens() && !attempt.Emit(event.tokens())) call.TryCancel();
  }
  absl::Status status = FromGrpcStatus(co_await attempt.Wait(call.Finish()));
  if (attempt.finished) {  // The client has everything, whatever the call's end.
    if (status.ok()) worker->Succeeded();
    co_return absl::OkStatus();
  }
  if (status.ok()) status = absl::UnavailableError("worker ended the stream without finishing");
  if (WorkerFault(status.code()) && !attempt.Cancelled()) worker->Failed();
  co_return absl::Status(status.code(), absl::StrCat("worker ", worker->worker_id(), ": ",
                                                     status.message()));
}

namespace {

// Ends a prefill call that failed (or must be abandoned) before its first answer, and says
// why. A stream opened ahead of the request may instead have broken while it waited, which
// says nothing of the worker now: it is not blamed (the retry's new call to it will tell).
template <typename ClientCancelled>
AsyncTask<absl::Status> AbandonPrefill(PrefillCall& prefill, WorkerLease& lease,
                                       ClientCancelled client_cancelled, bool opened_ahead,
                                       std::string what) {
  prefill.TryCancel();
  absl::Status status = FromGrpcStatus(co_await prefill.Finish());
  if (status.ok()) status = absl::UnavailableError("prefill stream ended early");
  if (WorkerFault(status.code()) && !client_cancelled() && !opened_ahead) lease.Failed();
  co_return absl::Status(status.code(), absl::StrCat(what, " on prefill worker ",
                                                     lease.worker_id(), ": ", status.message()));
}

}  // namespace

AsyncTask<absl::Status> Dispatcher::RunDisaggregated(Attempt& attempt) {
  const int64_t prompt_tokens = static_cast<int64_t>(attempt.job.prompt.size());
  absl::StatusOr<WorkerLease> prefill =
      registry_.Acquire(WorkerNeed::kPrefill, prompt_tokens, {}, attempt.job.prompt);
  if (!prefill.ok()) co_return prefill.status();
  const std::string handoff_id = absl::StrCat(attempt.job.request_id, "/", attempt.index);
  const tessera::internal::v1::WorkRequest work = attempt.Work(handoff_id);

  PrefillClientMessage opening;
  *opening.mutable_request() = work;
  bool standby = false;
  std::unique_ptr<PrefillCall> prefill_owner = standby_.Open(
      prefill->worker_id(), prefill->call_address(), attempt.parent, std::move(opening),
      [&] { return attempt.NewContext(std::min(attempt.timeout, options_.handoff_lease)); },
      /*take_waiting=*/!attempt.skip_standby, &standby);
  PrefillCall& prefill_call = *prefill_owner;
  attempt.Dispatched();
  metrics_.Increment("tessera_router_prefill_streams_total",
                     {{"opened", standby ? "standby" : "new"}});
  auto cancelled = [&attempt] { return attempt.Cancelled(); };
  // The next request's stream to this worker opens once this one's calls are on their way (the
  // sooner, the likelier the next request finds it when requests overlap).
  auto replenish = [&] {
    if (!attempt.skip_standby) standby_.Replenish(prefill->worker_id(), prefill->call_address());
  };
  // A stream opened ahead that fails before its answer may have broken while it waited: the
  // worker's other waiting streams are dropped, and the request's retries open their own
  // calls, whose failures count against the worker.
  auto forget_standby = [&] {
    if (!standby) return;
    standby_.Forget(prefill->worker_id());
    attempt.skip_standby = true;
  };

  // A request that ends with its first token needs no decode worker at all.
  if (attempt.job.sampling.max_tokens - static_cast<int32_t>(attempt.generated.size()) <= 1) {
    replenish();
    PrefillServerMessage first;
    if (!co_await attempt.Wait(prefill_call.Read(&first))) {
      forget_standby();
      co_return co_await AbandonPrefill(prefill_call, *prefill, cancelled, standby, "prefill");
    }
    attempt.prefill_cached_tokens = first.cached_tokens();
    if (!first.first().finish_reason().empty()) prefill->Release();
    const bool delivered = attempt.Emit(first.first());
    if (first.kv_held() || !delivered) prefill_call.TryCancel();
    prefill_call.WritesDone();
    co_await attempt.Wait(prefill_call.Finish());
    if (!delivered) co_return absl::CancelledError("the client went away");
    prefill->Succeeded();
    co_return attempt.finished ? absl::OkStatus()
                               : absl::InternalError("prefill ended without a finish reason");
  }

  bool have_first = false;
  absl::flat_hash_set<std::string> tried_decoders;
  absl::Status last_decode_error = absl::UnavailableError("no decode worker was tried");
  for (int32_t handoff = 0; handoff < options_.max_handoff_attempts; ++handoff) {
    absl::StatusOr<WorkerLease> decode =
        registry_.Acquire(WorkerNeed::kDecode, prompt_tokens, tried_decoders);
    if (!decode.ok()) {
      last_decode_error = decode.status();
      break;
    }
    tried_decoders.insert(decode->worker_id());
    // The decode call starts before the first token is read, so the decode worker pulls the
    // KV layer by layer while the prefill is still computing.
    auto decode_stub = tessera::internal::v1::Worker::NewStub(channels_.Get(decode->call_address()));
    DecodeRequest request;
    *request.mutable_work() = work;
    request.mutable_kv_source()->set_address(prefill->address());
    request.mutable_kv_source()->set_handoff_id(handoff_id);
    request.mutable_kv_source()->set_host_id(prefill->host_id());
    DecodeCall decode_call(*decode_stub, queues_, attempt.NewContext(attempt.timeout),
                           attempt.parent, request);

    if (!have_first) {
      replenish();
      PrefillServerMessage first;
      if (!co_await attempt.Wait(prefill_call.Read(&first))) {
        forget_standby();
        decode_call.TryCancel();
        co_await decode_call.Finish();
        co_return co_await AbandonPrefill(prefill_call, *prefill, cancelled, standby, "prefill");
      }
      have_first = true;
      attempt.prefill_cached_tokens = first.cached_tokens();
      if (!first.kv_held()) {  // Ends here: no decode worker takes part.
        prefill->Release();
        decode->Release();
      }
      if (!attempt.Emit(first.first())) {
        decode_call.TryCancel();
        prefill_call.TryCancel();
        co_await decode_call.Finish();
        co_await prefill_call.Finish();
        co_return absl::CancelledError("the client went away");
      }
      if (!first.kv_held()) {  // The request ended with its first token (EOS or a stop).
        decode_call.TryCancel();
        co_await attempt.Wait(decode_call.Finish());
        prefill_call.WritesDone();
        co_await attempt.Wait(prefill_call.Finish());
        prefill->Succeeded();
        co_return attempt.finished ? absl::OkStatus()
                                   : absl::InternalError("prefill ended without a finish reason");
      }
    }

    DecodeEvent event;
    if (!co_await attempt.Wait(decode_call.Read(&event)) || !event.kv_imported()) {
      decode_call.TryCancel();
      absl::Status status = FromGrpcStatus(co_await decode_call.Finish());
      if (status.ok()) status = absl::UnavailableError("decode stream ended before the KV arrived");
      if (attempt.Cancelled()) {
        prefill_call.TryCancel();
        co_await prefill_call.Finish();
        co_return absl::CancelledError("the client cancelled the request");
      }
      if (WorkerFault(status.code())) decode->Failed();
      last_decode_error = absl::Status(
          status.code(), absl::StrCat("KV handoff to decode worker ", decode->worker_id(), ": ",
                                      status.message()));
      if (!Retryable(status.code())) break;
      metrics_.Increment("tessera_handoff_retries_total");
      continue;  // The prefill worker still holds the KV: try another decode worker.
    }
    // The decode worker has the KV: the prefill worker may free it.
    {
      PrefillClientMessage release;
      release.set_release(true);
      prefill_call.Write(std::move(release), /*last=*/true);  // And half-close, in one op.
      co_await attempt.Wait(prefill_call.Finish());
      prefill->Succeeded();
      prefill->Release();
    }
    while (co_await attempt.Wait(decode_call.Read(&event))) {
      // The worker's part is over before the client hears the end.
      if (event.has_tokens() && !event.tokens().finish_reason().empty()) decode->Release();
      if (event.has_tokens() && !attempt.Emit(event.tokens())) decode_call.TryCancel();
    }
    absl::Status status = FromGrpcStatus(co_await attempt.Wait(decode_call.Finish()));
    if (attempt.finished) {  // The client has everything, whatever the call's end.
      if (status.ok()) decode->Succeeded();
      co_return absl::OkStatus();
    }
    if (status.ok()) status = absl::UnavailableError("decode stream ended without finishing");
    if (WorkerFault(status.code()) && !attempt.Cancelled()) decode->Failed();
    // Mid-stream: the KV is gone from the prefill worker; the caller resumes from the prompt
    // plus what was streamed.
    co_return absl::Status(status.code(), absl::StrCat("decode worker ", decode->worker_id(),
                                                       ": ", status.message()));
  }
  // No decode worker took the KV: let it go.
  prefill_call.TryCancel();
  co_await prefill_call.Finish();
  co_return last_decode_error;
}

}  // namespace tessera::engine::server
