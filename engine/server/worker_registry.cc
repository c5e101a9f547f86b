#include "engine/server/worker_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/server/worker_process.h"
#include "kvcache/block_hash.h"

namespace tessera::engine::server {

using tessera::internal::v1::WorkerRole;

WorkerLease::~WorkerLease() { Release(); }

void WorkerLease::Release() {
  if (registry_ == nullptr) return;
  if (!reported_) registry_->Report(worker_id_, true);
  registry_->Release(worker_id_, prompt_tokens_);
  registry_ = nullptr;
}

void WorkerLease::Succeeded() {
  if (registry_ == nullptr || reported_) return;
  reported_ = true;
  registry_->Report(worker_id_, true);
}

void WorkerLease::Failed() {
  if (registry_ == nullptr || reported_) return;
  reported_ = true;
  registry_->Report(worker_id_, false);
}

std::string WorkerRegistry::Register(const tessera::internal::v1::RegisterRequest& request) {
  absl::MutexLock lock(&mu_);
  std::string id = absl::StrCat(WorkerRoleName(request.role()), "-", next_id_++);
  Worker& worker = workers_[id];
  worker.info = request;
  worker.load = request.load();
  worker.last_heartbeat = Clock::now();
  worker.breaker = scheduler::CircuitBreaker(options_.breaker);
  return id;
}

tessera::internal::v1::HeartbeatResponse WorkerRegistry::Heartbeat(
    const tessera::internal::v1::HeartbeatRequest& request) {
  tessera::internal::v1::HeartbeatResponse response;
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(request.worker_id());
  if (it == workers_.end()) return response;  // known = false: re-register.
  it->second.load = request.load();
  it->second.last_heartbeat = Clock::now();
  response.set_known(true);
  response.set_drain(it->second.draining);
  for (const auto& [id, worker] : workers_) {
    if (worker.info.role() == tessera::internal::v1::ROLE_CACHE && !worker.draining) {
      response.add_cache_servers(worker.info.address());
    }
  }
  return response;
}

void WorkerRegistry::Deregister(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  workers_.erase(worker_id);
  prefix_index_.RemoveWorker(worker_id);
}

bool WorkerRegistry::ApplyKvEvents(const tessera::internal::v1::KvEvents& events) {
  absl::MutexLock lock(&mu_);
  if (!workers_.contains(events.worker_id())) return false;
  if (events.snapshot()) {
    prefix_index_.Snapshot(events.worker_id(), events.epoch(), events.sequence(),
                           std::span<const uint64_t>(events.stored().data(), events.stored_size()));
    return true;
  }
  return prefix_index_.Apply(
      events.worker_id(), events.epoch(), events.sequence(),
      std::span<const uint64_t>(events.stored().data(), events.stored_size()),
      std::span<const uint64_t>(events.removed().data(), events.removed_size()));
}

absl::Status WorkerRegistry::Drain(const std::string& worker_or_address) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, worker] : workers_) {
    if (id == worker_or_address || worker.info.address() == worker_or_address) {
      worker.draining = true;
      // An expert-parallel group is one instance: its ranks step together and leave together.
      const std::string& group = worker.info.ep_group();
      if (!group.empty()) {
        for (auto& [other_id, other] : workers_) {
          if (other.info.ep_group() == group) other.draining = true;
        }
      }
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(absl::StrCat("no worker ", worker_or_address));
}

std::vector<std::string> WorkerRegistry::Reap() {
  std::vector<std::string> dead;
  const Clock::time_point now = Clock::now();
  absl::MutexLock lock(&mu_);
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (now - it->second.last_heartbeat > options_.heartbeat_timeout) {
      dead.push_back(it->first);
      prefix_index_.RemoveWorker(it->first);
      workers_.erase(it++);
    } else {
      ++it;
    }
  }
  return dead;
}

namespace {

bool Serves(WorkerRole role, WorkerNeed need) {
  switch (need) {
    case WorkerNeed::kPrefill:
      return role == tessera::internal::v1::ROLE_PREFILL;
    case WorkerNeed::kDecode:
      return role == tessera::internal::v1::ROLE_DECODE;
    case WorkerNeed::kColocated:
      return role == tessera::internal::v1::ROLE_BOTH;
  }
  return false;
}

}  // namespace

bool WorkerRegistry::Has(WorkerNeed need) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [id, worker] : workers_) {
    if (!worker.draining && Serves(worker.info.role(), need)) return true;
  }
  return false;
}

absl::StatusOr<WorkerLease> WorkerRegistry::Acquire(WorkerNeed need, int64_t prompt_tokens,
                                                    const absl::flat_hash_set<std::string>& exclude,
                                                    std::span<const int32_t> prompt) {
  absl::MutexLock lock(&mu_);
  const Clock::time_point now = Clock::now();
  std::vector<Worker*> candidates;
  std::vector<const std::string*> ids;
  std::vector<scheduler::WorkerLoadView> loads;
  for (auto& [id, worker] : workers_) {
    if (worker.draining || !Serves(worker.info.role(), need) || exclude.contains(id)) continue;
    // Ejected workers are skipped; an ejected worker whose backoff ended is probed below.
    if (worker.breaker.state() == scheduler::CircuitBreaker::State::kProbing) continue;
    if (worker.breaker.state() == scheduler::CircuitBreaker::State::kEjected &&
        !worker.breaker.Allow(now)) {
      continue;
    }
    candidates.push_back(&worker);
    ids.push_back(&id);
    scheduler::WorkerLoadView view;
    view.queued_prefill_tokens = worker.load.queued_prefill_tokens();
    view.running_sequences = worker.load.running_sequences();
    view.free_kv_blocks = worker.load.free_kv_blocks();
    view.total_kv_blocks = worker.load.total_kv_blocks();
    view.in_flight = worker.in_flight;
    view.in_flight_prompt_tokens = worker.in_flight_prompt_tokens;
    loads.push_back(view);
  }
  const scheduler::WorkKind kind =
      need == WorkerNeed::kPrefill ? scheduler::WorkKind::kPrefill : scheduler::WorkKind::kDecode;
  std::optional<size_t> pick;
  if (need == WorkerNeed::kPrefill && !prompt.empty() && !candidates.empty() &&
      options_.routing.overlap_weight != 0) {
    // KV-aware: each worker's leading overlap with the prompt, in tokens, from the index.
    std::vector<double> scores;
    std::vector<int32_t> overlap;
    absl::flat_hash_map<std::pair<uint64_t, int32_t>, std::vector<kvcache::BlockHash>> hashes;
    for (size_t i = 0; i < candidates.size(); ++i) {
      const auto& info = candidates[i]->info;
      const int32_t bs = std::max(1, info.kv_block_size());
      auto [it, inserted] = hashes.try_emplace({info.kv_hash_seed(), bs});
      if (inserted) {
        it->second = kvcache::PrefixBlockHashes(prompt, bs, info.kv_hash_seed(),
                                                (static_cast<int32_t>(prompt.size()) - 1) / bs);
      }
      scores.push_back(scheduler::LoadScore(loads[i], kind, options_.weights));
      overlap.push_back(prefix_index_.LeadingOverlap(*ids[i], it->second) * bs);
    }
    pick = scheduler::PickByOverlapAndLoad(scores, overlap, rotation_[static_cast<int>(need)]++,
                                           options_.routing);
  } else {
    pick =
        scheduler::SelectWorker(loads, kind, rotation_[static_cast<int>(need)]++, options_.weights);
  }
  // A worker that was just allowed a probe takes the request: that is the probe.
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i]->breaker.state() == scheduler::CircuitBreaker::State::kProbing) pick = i;
  }
  if (!pick.has_value()) {
    return absl::UnavailableError(absl::StrCat("no ",
                                               need == WorkerNeed::kPrefill  ? "prefill"
                                               : need == WorkerNeed::kDecode ? "decode"
                                                                             : "colocated",
                                               " worker is available"));
  }
  Worker& chosen = *candidates[*pick];
  ++chosen.in_flight;
  chosen.in_flight_prompt_tokens += prompt_tokens;
  const bool local = !options_.host_id.empty() && chosen.info.host_id() == options_.host_id &&
                     !chosen.info.local_address().empty();
  return WorkerLease(this, *ids[*pick], chosen.info.address(),
                     local ? chosen.info.local_address() : chosen.info.address(),
                     chosen.info.host_id(), prompt_tokens);
}

void WorkerRegistry::Release(const std::string& worker_id, int64_t prompt_tokens) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  --it->second.in_flight;
  it->second.in_flight_prompt_tokens -= prompt_tokens;
}

void WorkerRegistry::Report(const std::string& worker_id, bool success) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  if (success) {
    it->second.breaker.RecordSuccess();
  } else {
    it->second.breaker.RecordFailure(Clock::now());
  }
}

std::vector<tessera::v1::WorkerStatus> WorkerRegistry::List() const {
  std::vector<tessera::v1::WorkerStatus> out;
  const Clock::time_point now = Clock::now();
  absl::MutexLock lock(&mu_);
  for (const auto& [id, worker] : workers_) {
    tessera::v1::WorkerStatus status;
    status.set_worker_id(id);
    status.set_role(std::string(WorkerRoleName(worker.info.role())));
    status.set_address(worker.info.address());
    status.set_state(worker.draining ? "draining"
                     : worker.breaker.state() == scheduler::CircuitBreaker::State::kClosed
                         ? "serving"
                         : "ejected");
    status.set_running_sequences(worker.load.running_sequences());
    status.set_queued_prefill_tokens(worker.load.queued_prefill_tokens());
    status.set_free_kv_blocks(worker.load.free_kv_blocks());
    status.set_total_kv_blocks(worker.load.total_kv_blocks());
    status.set_in_flight(worker.in_flight);
    status.set_seconds_since_heartbeat(
        std::chrono::duration<double>(now - worker.last_heartbeat).count());
    status.set_pid(worker.info.pid());
    status.set_kv_pulls_shared_memory(worker.load.kv_pulls_shared_memory());
    status.set_kv_pulls_network(worker.load.kv_pulls_network());
    status.set_kv_bytes_pulled(worker.load.kv_bytes_pulled());
    const auto& kv = worker.load.kv_cache();
    status.set_kv_lookups(kv.lookups());
    status.set_kv_device_hits(kv.device_hits());
    status.set_kv_host_hits(kv.host_hits());
    status.set_kv_offloaded(kv.offloaded());
    status.set_kv_restored(kv.restored());
    status.set_kv_evicted_device(kv.evicted_device());
    status.set_kv_evicted_host(kv.evicted_host());
    status.set_kv_tier_bytes_moved(kv.bytes_moved());
    status.set_preemptions(kv.preemptions());
    status.set_cached_device_blocks(kv.cached_device_blocks());
    status.set_cached_host_blocks(kv.cached_host_blocks());
    status.set_host_blocks(kv.host_blocks());
    status.set_held_block_contents(kv.held_hashes());
    status.set_indexed_block_contents(prefix_index_.held(id));
    status.set_pool_lookups(kv.pool_lookups());
    status.set_pool_hits(kv.pool_hits());
    status.set_pool_puts(kv.pool_puts());
    status.set_pool_stored_blocks(kv.pool_stored_blocks());
    status.set_pool_stored_bytes(kv.pool_stored_bytes());
    status.set_pool_capacity_bytes(kv.pool_capacity_bytes());
    status.set_ep_group(worker.info.ep_group());
    status.set_ep_rank(worker.info.ep_rank());
    status.set_ep_size(worker.info.ep_size());
    status.set_num_experts(worker.load.num_experts());
    *status.mutable_expert_layers() = worker.load.expert_layers();
    *status.mutable_expert_tokens() = worker.load.expert_tokens();
    out.push_back(std::move(status));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.worker_id() < b.worker_id(); });
  return out;
}

}  // namespace tessera::engine::server
