#include "engine/server/kv_transfer_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kvcache/kv_rows.h"

namespace tessera::engine::server {

using tessera::internal::v1::PullResponse;

grpc::Status KvTransferService::Pull(grpc::ServerContext* context,
                                     const tessera::internal::v1::PullRequest* request,
                                     grpc::ServerWriter<PullResponse>* writer) {
  HandoffRegistry& handoffs = *context_.handoffs;
  const std::string& id = request->handoff_id();
  // The decode worker may ask before the prefill request reached this worker.
  absl::StatusOr<HandoffView> view = handoffs.Wait(id, 0, absl::Seconds(10));
  if (!view.ok()) return grpc::Status(grpc::StatusCode::NOT_FOUND, std::string(view.status().message()));

  const kvcache::KvCacheLayout& layout = context_.cache->layout();
  const bool shared = !context_.force_network_kv && !request->host_id().empty() &&
                      request->host_id() == context_.host_id &&
                      !context_.cache->shared_memory_name().empty();
  PullResponse response;
  {
    auto* out = response.mutable_layout();
    out->set_num_layers(layout.shape.num_layers);
    out->set_num_kv_heads(layout.shape.num_kv_heads);
    out->set_head_dim(layout.shape.head_dim);
    out->set_block_size(layout.shape.block_size);
    out->set_num_blocks(layout.shape.num_blocks);
    if (shared) out->set_shared_memory_name(context_.cache->shared_memory_name());
    out->set_positions(view->positions);
  }

  const int32_t layers = layout.shape.num_layers;
  const int32_t block_size = layout.shape.block_size;
  const size_t row_bytes = static_cast<size_t>(layout.shape.kv_dim()) * sizeof(uint16_t);
  if (request->first_position() < 0 || request->first_position() > view->positions) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("first_position ", request->first_position(),
                                     " is outside the handoff's ", view->positions, " positions"));
  }
  std::vector<int32_t> sent(layers, request->first_position());
  while (true) {
    if (view->closed) {
      return grpc::Status(grpc::StatusCode::ABORTED,
                          absl::StrCat("handoff ", id, " was released before its KV was sent"));
    }
    for (int32_t layer = 0; layer < layers; ++layer) {
      const int32_t ready = view->layer_ready[layer];
      if (ready <= sent[layer]) continue;
      const int32_t first = sent[layer], count = ready - first;
      auto* chunk = response.add_chunks();
      chunk->set_layer(layer);
      chunk->set_first_position(first);
      chunk->set_num_positions(count);
      const int32_t first_block = first / block_size, last_block = (ready - 1) / block_size;
      if (shared) {
        for (int32_t b = first_block; b <= last_block; ++b) chunk->add_source_blocks(view->blocks[b]);
      } else {
        std::string* keys = chunk->mutable_keys();
        std::string* values = chunk->mutable_values();
        keys->resize(count * row_bytes);
        values->resize(count * row_bytes);
        auto from = kvcache::KvRows::InCache(context_.cache->data(), layout, view->blocks, 0);
        auto to = kvcache::KvRows::Flat(reinterpret_cast<uint8_t*>(keys->data()),
                                        reinterpret_cast<uint8_t*>(values->data()),
                                        layout.shape.kv_dim(), first);
        kvcache::CopyKvRows(from, to, layer, first, count);
      }
      sent[layer] = ready;
      // Rows travelling in the messages go in pieces of about a megabyte, which gRPC streams
      // best; through shared memory a message is only block ids, so one carries everything.
      if (!shared && response.ByteSizeLong() >= (1u << 20)) {
        if (!writer->Write(response)) return grpc::Status(grpc::StatusCode::CANCELLED, "puller left");
        response.Clear();
      }
    }
    const bool all_sent = std::all_of(sent.begin(), sent.end(),
                                      [&](int32_t n) { return n >= view->positions; });
    const bool done = view->finished && all_sent;
    if (done) {
      for (int32_t token : view->generated) response.mutable_done()->add_generated(token);
    }
    if (response.has_layout() || response.chunks_size() > 0 || done) {
      if (!writer->Write(response)) return grpc::Status(grpc::StatusCode::CANCELLED, "puller left");
      response.Clear();
    }
    if (done) return grpc::Status::OK;
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "pull cancelled");
    const int64_t version = view->version;
    view = handoffs.Wait(id, version, absl::Milliseconds(200));
    if (!view.ok()) {
      return grpc::Status(grpc::StatusCode::ABORTED, std::string(view.status().message()));
    }
  }
}

}  // namespace tessera::engine::server
