// The edge between protobuf/gRPC types and the engine's own: sampling parameters, stream
// events and statuses. Only engine/server sees protobuf types.
// Thread-safety: stateless functions.
#ifndef TESSERA_ENGINE_SERVER_PROTO_CONVERT_H_
#define TESSERA_ENGINE_SERVER_PROTO_CONVERT_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/runtime/step_loop.h"
#include "engine/sampling/sampling_params.h"
#include "tessera/internal/v1/worker.pb.h"
#include "tessera/v1/inference.pb.h"

namespace tessera::engine::server {

inline constexpr int32_t kDefaultMaxTokens = 256;

// Fills in defaults for unset fields and validates; InvalidArgument names the field as
// "sampling.<field>".
absl::StatusOr<SamplingParams> SamplingFromProto(const tessera::v1::SamplingParams& proto);
void SamplingToProto(const SamplingParams& params, tessera::v1::SamplingParams* proto);

void EventToProto(const StreamEvent& event, tessera::internal::v1::TokenEvent* proto);
void UsageToProto(const Usage& usage, tessera::v1::Usage* proto);

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_PROTO_CONVERT_H_
