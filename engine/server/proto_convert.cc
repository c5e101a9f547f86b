#include "engine/server/proto_convert.h"

#include "absl/strings/str_cat.h"

namespace tessera::engine::server {

absl::StatusOr<SamplingParams> SamplingFromProto(const tessera::v1::SamplingParams& proto) {
  SamplingParams params;
  params.temperature = proto.temperature();
  params.top_p = proto.has_top_p() ? proto.top_p() : 1.0f;
  params.top_k = proto.top_k();
  params.min_p = proto.min_p();
  params.repetition_penalty = proto.has_repetition_penalty() ? proto.repetition_penalty() : 1.0f;
  params.frequency_penalty = proto.frequency_penalty();
  params.presence_penalty = proto.presence_penalty();
  if (proto.has_seed()) params.seed = proto.seed();
  params.max_tokens = proto.has_max_tokens() ? proto.max_tokens() : kDefaultMaxTokens;
  params.stop.assign(proto.stop().begin(), proto.stop().end());
  params.ignore_eos = proto.ignore_eos();
  absl::Status status = ValidateSamplingParams(params);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.", status.message()));
  }
  return params;
}

void SamplingToProto(const SamplingParams& params, tessera::v1::SamplingParams* proto) {
  proto->set_temperature(params.temperature);
  proto->set_top_p(params.top_p);
  proto->set_top_k(params.top_k);
  proto->set_min_p(params.min_p);
  proto->set_repetition_penalty(params.repetition_penalty);
  proto->set_frequency_penalty(params.frequency_penalty);
  proto->set_presence_penalty(params.presence_penalty);
  if (params.seed.has_value()) proto->set_seed(*params.seed);
  proto->set_max_tokens(params.max_tokens);
  for (const std::string& stop : params.stop) proto->add_stop(stop);
  proto->set_ignore_eos(params.ignore_eos);
}

void UsageToProto(const Usage& usage, tessera::v1::Usage* proto) {
  proto->set_prompt_tokens(usage.prompt_tokens);
  proto->set_completion_tokens(usage.completion_tokens);
  proto->set_cached_tokens(usage.cached_tokens);
  proto->set_time_to_first_token_ms(usage.time_to_first_token_ms);
}

void EventToProto(const StreamEvent& event, tessera::internal::v1::TokenEvent* proto) {
  for (int32_t token : event.token_ids) proto->add_token_ids(token);
  proto->set_text(event.text);
  if (event.finish_reason != FinishReason::kNone) {
    proto->set_finish_reason(std::string(FinishReasonName(event.finish_reason)));
    UsageToProto(event.usage, proto->mutable_usage());
  }
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace tessera::engine::server
