#include "engine/server/worker_service.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "engine/server/event_channel.h"
#include "engine/server/proto_convert.h"

namespace tessera::engine::server {
namespace {

using tessera::internal::v1::DecodeEvent;
using tessera::internal::v1::PrefillClientMessage;
using tessera::internal::v1::PrefillServerMessage;
using tessera::internal::v1::WorkRequest;

constexpr absl::Duration kPollInterval = absl::Milliseconds(50);

absl::StatusOr<GenerationRequest> ToGenerationRequest(const WorkRequest& work,
                                                      std::shared_ptr<EventChannel> channel) {
  GenerationRequest request;
  request.prompt.assign(work.prompt().begin(), work.prompt().end());
  request.generated.assign(work.generated().begin(), work.generated().end());
  absl::StatusOr<SamplingParams> sampling = SamplingFromProto(work.sampling());
  if (!sampling.ok()) return sampling.status();
  request.sampling = *std::move(sampling);
  request.on_event = EventChannel::Sink(std::move(channel));
  return request;
}

// Streams a request's events to `write` until its final event, which it returns. If the RPC
// is cancelled or a write fails, the request is cancelled in the loop (freeing its KV) and
// its final event is still awaited, so nothing is left behind.
StreamEvent Pump(WorkerContext& context, grpc::ServerContext* rpc, EventChannel& channel,
                 int64_t id, const std::function<bool(const StreamEvent&)>& write) {
  bool cancelled = false;
  auto cancel = [&] {
    if (cancelled) return;
    cancelled = true;
    context.step->Post([id](StepLoop& loop) { loop.Cancel(id); });
  };
  while (true) {
    std::optional<StreamEvent> event = channel.Pop(kPollInterval);
    if (!event.has_value()) {
      if (rpc->IsCancelled()) cancel();
      continue;
    }
    if (event->finish_reason != FinishReason::kNone) return *std::move(event);
    if (!cancelled && !write(*event)) cancel();
  }
}

grpc::Status StatusOfFinal(const StreamEvent& final_event) {
  if (final_event.finish_reason == FinishReason::kError) return ToGrpcStatus(final_event.error);
  if (final_event.finish_reason == FinishReason::kCancelled) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled");
  }
  return grpc::Status::OK;
}

// Before a prompt is computed here: blocks of it that this worker lacks but the cache pool
// has are fetched into the local prefix cache, so the step loop finds them. Pool failures are
// misses.
void FetchFromPool(WorkerContext& context, const std::vector<int32_t>& prompt) {
  if (context.pool == nullptr || !context.pool->has_servers()) return;
  auto [hashes, held] = context.step->Call<std::pair<std::vector<uint64_t>, int32_t>>(
      [&](StepLoop& loop) {
        std::vector<uint64_t> h = loop.PromptBlockHashes(prompt);
        int32_t n = loop.LeadingHeld(h);
        return std::make_pair(std::move(h), n);
      });
  if (held >= static_cast<int32_t>(hashes.size())) return;
  std::vector<uint64_t> missing(hashes.begin() + held, hashes.end());
  std::vector<std::string> kv = context.pool->GetLeading(missing);
  if (kv.empty()) return;
  missing.resize(kv.size());
  context.step->Call<int32_t>(
      [&](StepLoop& loop) { return loop.ImportCachedBlocks(missing, kv); });
}

bool CanPrefill(tessera::internal::v1::WorkerRole role) {
  return role == tessera::internal::v1::ROLE_PREFILL || role == tessera::internal::v1::ROLE_BOTH;
}

}  // namespace

grpc::Status WorkerService::Prefill(
    grpc::ServerContext* rpc,
    grpc::ServerReaderWriter<PrefillServerMessage, PrefillClientMessage>* stream) {
  // The router may open the stream well before its request (StandbyPrefillStreams).
  if (!context_.idle_calls.Enter(rpc)) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is leaving");
  }
  PrefillClientMessage message;
  const bool received = stream->Read(&message);
  context_.idle_calls.Leave(rpc);
  if (!received) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the stream ended before its request");
  }
  if (!message.has_request()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first Prefill message must carry the request");
  }
  if (!CanPrefill(context_.role)) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "this worker does not prefill");
  }
  AdmissionTicket ticket(context_);
  if (!ticket.status().ok()) return ToGrpcStatus(ticket.status());
  const WorkRequest& work = message.request();
  const std::string handoff_id = work.request_id();
  if (handoff_id.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request_id is empty");
  }
  auto channel = std::make_shared<EventChannel>();
  absl::StatusOr<GenerationRequest> request = ToGenerationRequest(work, channel);
  if (!request.ok()) return ToGrpcStatus(request.status());
  const int32_t positions = work.prompt_size() + work.generated_size();
  if (absl::Status s = context_.handoffs->Open(handoff_id, positions); !s.ok()) {
    return ToGrpcStatus(s);
  }
  HandoffRegistry* handoffs = context_.handoffs;
  FetchFromPool(context_, request->prompt);
  request->prefill_only = true;
  request->on_kv_ready = [handoffs, handoff_id](int32_t layer, int32_t ready,
                                                std::span<const kvcache::BlockId> blocks) {
    handoffs->Progress(handoff_id, layer, ready, blocks);
  };
  absl::StatusOr<int64_t> id = context_.step->Call<absl::StatusOr<int64_t>>(
      [&](StepLoop& loop) { return loop.Add(*std::move(request)); });
  if (!id.ok()) {
    handoffs->Close(handoff_id);
    return ToGrpcStatus(id.status());
  }

  // Prefill events: the first token arrives in the final event (kHandoff, or the reason the
  // request ended right there). Earlier events cannot occur, but are merged if they do.
  StreamEvent first;
  StreamEvent final_event = Pump(context_, rpc, *channel, *id, [&](const StreamEvent& event) {
    first.token_ids.insert(first.token_ids.end(), event.token_ids.begin(), event.token_ids.end());
    first.text += event.text;
    return true;
  });
  first.token_ids.insert(first.token_ids.end(), final_event.token_ids.begin(),
                         final_event.token_ids.end());
  first.text += final_event.text;
  first.finish_reason = final_event.finish_reason;
  first.usage = final_event.usage;
  const int64_t request_id = *id;
  auto release = [&] {
    handoffs->Close(handoff_id);
    if (final_event.finish_reason == FinishReason::kHandoff) {
      context_.step->Post([request_id](StepLoop& loop) { loop.ReleaseHeld(request_id); });
    }
  };
  if (rpc->IsCancelled() || final_event.finish_reason == FinishReason::kError ||
      final_event.finish_reason == FinishReason::kCancelled) {
    release();
    grpc::Status status = StatusOfFinal(final_event);
    return status.ok() ? grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled") : status;
  }

  PrefillServerMessage reply;
  reply.set_cached_tokens(final_event.usage.cached_tokens);
  const bool held = final_event.finish_reason == FinishReason::kHandoff;
  if (held) {
    StreamEvent shown = first;
    shown.finish_reason = FinishReason::kNone;  // The request goes on at a decode worker.
    EventToProto(shown, reply.mutable_first());
    reply.set_kv_held(true);
    handoffs->Finish(handoff_id, first.token_ids);
  } else {
    EventToProto(first, reply.mutable_first());
  }
  if (!stream->Write(reply) || !held) {
    release();
    return grpc::Status::OK;
  }
  // Hold the KV until the router says a decode worker has it (or gives up: closing the
  // stream, cancelling, or the call's deadline passing all end the Read).
  while (stream->Read(&message)) {
    if (message.has_release()) break;
  }
  release();
  return grpc::Status::OK;
}

grpc::Status WorkerService::Decode(grpc::ServerContext* rpc,
                                   const tessera::internal::v1::DecodeRequest* request,
                                   grpc::ServerWriter<DecodeEvent>* writer) {
  AdmissionTicket ticket(context_);
  if (!ticket.status().ok()) return ToGrpcStatus(ticket.status());
  auto channel = std::make_shared<EventChannel>();
  absl::StatusOr<GenerationRequest> generation = ToGenerationRequest(request->work(), channel);
  if (!generation.ok()) return ToGrpcStatus(generation.status());

  int64_t id = 0;
  if (request->has_kv_source()) {
    absl::StatusOr<ImportSlot> slot = context_.step->Call<absl::StatusOr<ImportSlot>>(
        [&](StepLoop& loop) { return loop.AddImporting(*std::move(generation)); });
    if (!slot.ok()) return ToGrpcStatus(slot.status());
    id = slot->id;
    absl::StatusOr<KvPullResult> pulled =
        context_.puller->Pull(request->kv_source(), *slot, *context_.cache, rpc);
    absl::Status joined = pulled.status();
    if (pulled.ok()) {
      joined = context_.step->Call<absl::Status>(
          [&](StepLoop& loop) { return loop.FinishImport(id, pulled->generated); });
    }
    if (!joined.ok()) {
      context_.step->Post([id, joined](StepLoop& loop) { loop.Cancel(id, joined); });
      // Wait for the cancellation's final event: the blocks are free when it arrives.
      while (true) {
        std::optional<StreamEvent> event = channel->Pop(kPollInterval);
        if (event.has_value() && event->finish_reason != FinishReason::kNone) break;
      }
      return ToGrpcStatus(joined);
    }
    DecodeEvent imported;
    imported.set_kv_imported(true);
    writer->Write(imported);
  } else {
    FetchFromPool(context_, generation->prompt);
    absl::StatusOr<int64_t> added = context_.step->Call<absl::StatusOr<int64_t>>(
        [&](StepLoop& loop) { return loop.Add(*std::move(generation)); });
    if (!added.ok()) return ToGrpcStatus(added.status());
    id = *added;
  }

  StreamEvent final_event = Pump(context_, rpc, *channel, id, [&](const StreamEvent& event) {
    DecodeEvent out;
    EventToProto(event, out.mutable_tokens());
    return writer->Write(out);
  });
  if (final_event.finish_reason == FinishReason::kError ||
      final_event.finish_reason == FinishReason::kCancelled) {
    return StatusOfFinal(final_event);
  }
  DecodeEvent last;
  EventToProto(final_event, last.mutable_tokens());
  // The last event leaves together with the call's status: the router learns that the
  // request is complete from one message, not two.
  writer->WriteLast(last, grpc::WriteOptions());
  return grpc::Status::OK;
}

}  // namespace tessera::engine::server
