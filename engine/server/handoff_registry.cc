#include "engine/server/handoff_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tessera::engine::server {

void HandoffRegistry::Touch(HandoffView& view) {
  view.version = next_version_++;
  view.finished = !view.generated.empty() &&
                  std::all_of(view.layer_ready.begin(), view.layer_ready.end(),
                              [&](int32_t ready) { return ready >= view.positions; });
}

absl::Status HandoffRegistry::Open(const std::string& handoff_id, int32_t positions) {
  absl::MutexLock lock(&mu_);
  if (entries_.contains(handoff_id)) {
    return absl::AlreadyExistsError(absl::StrCat("handoff ", handoff_id, " is already open"));
  }
  HandoffView view;
  view.positions = positions;
  view.layer_ready.assign(num_layers_, 0);
  Touch(view);
  entries_.emplace(handoff_id, std::move(view));
  return absl::OkStatus();
}

void HandoffRegistry::Progress(const std::string& handoff_id, int32_t layer, int32_t ready,
                               std::span<const kvcache::BlockId> blocks) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(handoff_id);
  if (it == entries_.end() || layer < 0 || layer >= num_layers_) return;
  HandoffView& view = it->second;
  view.layer_ready[layer] = std::min(ready, view.positions);
  if (blocks.size() != view.blocks.size()) view.blocks.assign(blocks.begin(), blocks.end());
  Touch(view);
}

void HandoffRegistry::Finish(const std::string& handoff_id, std::vector<int32_t> generated) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(handoff_id);
  if (it == entries_.end()) return;
  it->second.generated = std::move(generated);
  Touch(it->second);
}

void HandoffRegistry::Close(const std::string& handoff_id) {
  absl::MutexLock lock(&mu_);
  entries_.erase(handoff_id);
  ++next_version_;  // Wakes waiters, who find the entry gone.
}

absl::StatusOr<HandoffView> HandoffRegistry::Wait(const std::string& handoff_id,
                                                  int64_t after_version, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = entries_.find(handoff_id);
    if (it == entries_.end()) return after_version > 0;
    return it->second.version > after_version;
  };
  mu_.AwaitWithTimeout(absl::Condition(&changed), timeout);
  auto it = entries_.find(handoff_id);
  if (it != entries_.end()) return it->second;
  if (after_version == 0) {
    return absl::NotFoundError(absl::StrCat("no handoff ", handoff_id, " on this worker"));
  }
  HandoffView closed;
  closed.closed = true;
  closed.version = after_version + 1;
  return closed;
}

int32_t HandoffRegistry::open_count() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int32_t>(entries_.size());
}

}  // namespace tessera::engine::server
