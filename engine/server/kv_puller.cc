#include "engine/server/kv_puller.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/server/proto_convert.h"
#include "kvcache/kv_rows.h"
#include "tessera/internal/v1/worker.grpc.pb.h"

namespace tessera::engine::server {

using tessera::internal::v1::PullRequest;
using tessera::internal::v1::PullResponse;

absl::StatusOr<std::shared_ptr<kvcache::SharedMemoryRegion>> KvPuller::MapPeer(
    const std::string& name, size_t bytes) {
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(name);
  if (it != peers_.end() && it->second->size() == bytes) return it->second;
  absl::StatusOr<std::unique_ptr<kvcache::SharedMemoryRegion>> region =
      kvcache::SharedMemoryRegion::OpenReadOnly(name, bytes);
  if (!region.ok()) return region.status();
  std::shared_ptr<kvcache::SharedMemoryRegion> shared = std::move(*region);
  peers_[name] = shared;
  return shared;
}

absl::StatusOr<KvPullResult> KvPuller::Pull(const tessera::internal::v1::KvSource& source,
                                            const ImportSlot& slot, kvcache::PagedKvCache& cache,
                                            grpc::ServerContext* parent) {
  const std::string where = absl::StrCat("pulling KV ", source.handoff_id(), " from ", source.address());
  auto fail = [&](absl::StatusCode code, auto&&... parts) {
    return absl::Status(code, absl::StrCat(where, ": ", parts...));
  };
  std::unique_ptr<grpc::ClientContext> context =
      parent != nullptr ? grpc::ClientContext::FromServerContext(*parent)
                        : std::make_unique<grpc::ClientContext>();
  PullRequest request;
  request.set_handoff_id(source.handoff_id());
  if (!force_network_) request.set_host_id(local_host_id_);
  request.set_first_position(slot.first_position);
  auto stub = tessera::internal::v1::KvTransfer::NewStub(channels_.Get(source.address()));
  std::unique_ptr<grpc::ClientReader<PullResponse>> reader = stub->Pull(context.get(), request);

  PullResponse response;
  if (!reader->Read(&response) || !response.has_layout()) {
    grpc::Status status = reader->Finish();
    if (!status.ok()) {
      return absl::Status(FromGrpcStatus(status).code(),
                          absl::StrCat(where, ": ", status.error_message()));
    }
    return fail(absl::StatusCode::kDataLoss, "the first message is not the layout");
  }
  const auto& layout = response.layout();
  const kvcache::KvCacheShape& local = cache.shape();
  if (layout.num_layers() != local.num_layers || layout.num_kv_heads() != local.num_kv_heads ||
      layout.head_dim() != local.head_dim) {
    context->TryCancel();
    return fail(absl::StatusCode::kFailedPrecondition, "the source's KV shape (",
                layout.num_layers(), " layers, ", layout.num_kv_heads(), " heads of ",
                layout.head_dim(), ") differs from this worker's");
  }
  if (layout.positions() != slot.positions) {
    context->TryCancel();
    return fail(absl::StatusCode::kFailedPrecondition, "the source holds ", layout.positions(),
                " positions, this request has ", slot.positions);
  }
  kvcache::KvCacheShape source_shape = local;
  source_shape.block_size = layout.block_size();
  source_shape.num_blocks = layout.num_blocks();
  if (absl::Status s = kvcache::ValidateKvCacheShape(source_shape); !s.ok()) {
    context->TryCancel();
    return fail(absl::StatusCode::kDataLoss, s.message());
  }
  const kvcache::KvCacheLayout source_layout{source_shape};
  std::shared_ptr<kvcache::SharedMemoryRegion> peer;
  KvPullResult result;
  if (!layout.shared_memory_name().empty()) {
    absl::StatusOr<std::shared_ptr<kvcache::SharedMemoryRegion>> mapped =
        MapPeer(layout.shared_memory_name(), source_layout.total_bytes());
    if (!mapped.ok()) {
      context->TryCancel();
      return fail(absl::StatusCode::kUnavailable, mapped.status().message());
    }
    peer = *mapped;
    result.shared_memory = true;
  }

  const auto destination = kvcache::KvRows::InCache(cache.data(), cache.layout(), slot.blocks, 0);
  const size_t row_bytes = static_cast<size_t>(local.kv_dim()) * sizeof(uint16_t);
  std::vector<int32_t> copied(local.num_layers, slot.first_position);
  bool done = false;
  // The first message may already carry chunks (and even the end).
  bool have_message = true;
  while (have_message || reader->Read(&response)) {
    have_message = false;
    for (const auto& chunk : response.chunks()) {
      const int32_t layer = chunk.layer(), first = chunk.first_position(),
                    count = chunk.num_positions();
      if (layer < 0 || layer >= local.num_layers || first != copied[layer] || count <= 0 ||
          first + count > slot.positions) {
        context->TryCancel();
        return fail(absl::StatusCode::kDataLoss, "chunk for layer ", layer, " positions [",
                    first, ", ", first + count, ") does not continue the transfer");
      }
      if (peer != nullptr) {
        const int32_t bs = source_shape.block_size;
        const int32_t blocks_needed = (first + count - 1) / bs - first / bs + 1;
        bool valid = chunk.source_blocks_size() == blocks_needed &&
                     std::all_of(chunk.source_blocks().begin(), chunk.source_blocks().end(),
                                 [&](int32_t b) { return b >= 0 && b < source_shape.num_blocks; });
        if (!valid) {
          context->TryCancel();
          return fail(absl::StatusCode::kDataLoss, "chunk for layer ", layer, " names bad blocks");
        }
        std::vector<kvcache::BlockId> blocks(chunk.source_blocks().begin(),
                                             chunk.source_blocks().end());
        auto from = kvcache::KvRows::InCache(peer->data(), source_layout, blocks, first);
        kvcache::CopyKvRows(from, destination, layer, first, count);
      } else {
        if (chunk.keys().size() != count * row_bytes ||
            chunk.values().size() != count * row_bytes) {
          context->TryCancel();
          return fail(absl::StatusCode::kDataLoss, "chunk for layer ", layer, " carries ",
                      chunk.keys().size(), " key bytes for ", count, " positions");
        }
        auto from = kvcache::KvRows::Flat(reinterpret_cast<const uint8_t*>(chunk.keys().data()),
                                          reinterpret_cast<const uint8_t*>(chunk.values().data()),
                                          local.kv_dim(), first);
        kvcache::CopyKvRows(from, destination, layer, first, count);
      }
      copied[layer] = first + count;
      result.bytes += static_cast<int64_t>(2 * count * row_bytes);
      if (faults_left_.load() > 0 && faults_left_.fetch_sub(1) > 0) {
        context->TryCancel();
        reader->Finish();
        return fail(absl::StatusCode::kUnavailable, "injected fault: the transfer broke off");
      }
    }
    if (response.has_done()) {
      result.generated.assign(response.done().generated().begin(),
                              response.done().generated().end());
      done = true;
      break;
    }
  }
  grpc::Status status = reader->Finish();
  if (!done || !status.ok()) {
    absl::StatusCode code = status.ok() ? absl::StatusCode::kDataLoss
                                        : FromGrpcStatus(status).code();
    return absl::Status(code, absl::StrCat(where, ": ",
                                           status.ok() ? "stream ended early" : status.error_message()));
  }
  if (std::any_of(copied.begin(), copied.end(), [&](int32_t n) { return n != slot.positions; }) ||
      result.generated.empty()) {
    return fail(absl::StatusCode::kDataLoss, "the transfer ended before every layer arrived");
  }
  total_bytes_.fetch_add(result.bytes);
  (result.shared_memory ? shared_memory_pulls_ : network_pulls_).fetch_add(1);
  return result;
}

}  // namespace tessera::engine::server
