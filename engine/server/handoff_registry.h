// The prefill side of KV handoffs: for each prefill-only request, how far each layer's KV has
// been computed and in which blocks, so that KvTransfer::Pull can stream layers to a decode
// worker while later layers (and later prompt chunks) are still computing.
// The step thread reports progress (Progress), the Prefill handler reports the first token
// (Finish) and the end of the handoff (Close); Pull handlers wait on it (Wait).
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_HANDOFF_REGISTRY_H_
#define TESSERA_ENGINE_SERVER_HANDOFF_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kvcache/block_allocator.h"

namespace tessera::engine::server {

// What a puller sees of a handoff at one moment.
struct HandoffView {
  int32_t positions = 0;                    // Positions that will be handed over.
  std::vector<int32_t> layer_ready;         // Per layer: positions [0, n) are final.
  std::vector<kvcache::BlockId> blocks;     // Block table (grows with the prompt's chunks).
  std::vector<int32_t> generated;           // Set once the first token exists.
  bool finished = false;                    // Every layer of every position is final.
  bool closed = false;                      // Released or cancelled: stop reading.
  int64_t version = 0;                      // Grows with every change.
};

class HandoffRegistry {
 public:
  explicit HandoffRegistry(int32_t num_layers) : num_layers_(num_layers) {}

  // AlreadyExists if the id is live.
  absl::Status Open(const std::string& handoff_id, int32_t positions);
  // Step thread: layer `layer` is final for positions [0, ready), stored in `blocks`.
  void Progress(const std::string& handoff_id, int32_t layer, int32_t ready,
                std::span<const kvcache::BlockId> blocks);
  // The prefill produced `generated`: once every layer is ready, the handoff is complete.
  void Finish(const std::string& handoff_id, std::vector<int32_t> generated);
  // Ends the handoff (released, cancelled or failed) and forgets it; waiting pullers wake.
  void Close(const std::string& handoff_id);

  // Waits until the handoff's version exceeds `after_version` (0: until it exists), or
  // `timeout` passes, and returns the view then. A handoff that was seen (after_version > 0)
  // and is gone comes back closed. NotFound if it never appeared.
  absl::StatusOr<HandoffView> Wait(const std::string& handoff_id, int64_t after_version,
                                   absl::Duration timeout);

  int32_t num_layers() const { return num_layers_; }
  int32_t open_count() const;

 private:
  void Touch(HandoffView& view) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int32_t num_layers_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, HandoffView> entries_ ABSL_GUARDED_BY(mu_);
  int64_t next_version_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_HANDOFF_REGISTRY_H_
