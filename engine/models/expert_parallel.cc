#include "engine/models/expert_parallel.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/models/fp32_model_parts.h"

namespace tessera::engine {
namespace {

std::span<const std::byte> Bytes(const void* data, size_t size) {
  return {static_cast<const std::byte*>(data), size};
}
std::span<std::byte> MutableBytes(void* data, size_t size) {
  return {static_cast<std::byte*>(data), size};
}

}  // namespace

absl::StatusOr<std::unique_ptr<RoutedExperts>> RoutedExperts::Load(
    const HfCheckpoint& checkpoint, const std::string& prefix, int64_t num_experts, int64_t hidden,
    int64_t intermediate, const std::vector<comm::Communicator*>& lanes, MoeLayerTimes* times,
    ExpertBalancing balancing) {
  const int64_t ranks = lanes.empty() ? 1 : lanes[0]->size();
  if (num_experts % ranks != 0) {
    return absl::InvalidArgumentError(absl::StrCat(checkpoint.directory(), ": ", num_experts,
                                                   " experts cannot be split evenly over ", ranks,
                                                   " expert-parallel ranks"));
  }
  ExpertFactory factory =
      [&checkpoint, prefix, hidden, intermediate](
          std::span<const int32_t> experts) -> absl::StatusOr<std::unique_ptr<ExpertBlock>> {
    std::vector<ExpertWeights> weights;
    for (int32_t e : experts) {
      TESSERA_ASSIGN_OR_RETURN(ExpertWeights w, LoadSwiGlu(checkpoint, absl::StrCat(prefix, e, "."),
                                                           hidden, intermediate));
      weights.push_back(std::move(w));
    }
    return std::make_unique<MoeExperts>(hidden, intermediate, std::move(weights));
  };
  return Create(std::move(factory), static_cast<int32_t>(num_experts), static_cast<int32_t>(hidden),
                lanes, times, balancing);
}

absl::StatusOr<std::unique_ptr<RoutedExperts>> RoutedExperts::Create(
    ExpertFactory factory, int32_t num_experts, int32_t hidden,
    const std::vector<comm::Communicator*>& lanes, MoeLayerTimes* times,
    ExpertBalancing balancing) {
  const int ranks = lanes.empty() ? 1 : lanes[0]->size();
  for (const comm::Communicator* lane : lanes) {
    if (lane->size() != ranks || lane->rank() != lanes[0]->rank()) {
      return absl::InvalidArgumentError("the expert-parallel lanes are not over the same ranks");
    }
  }
  if (num_experts < 1 || num_experts % ranks != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        num_experts, " experts cannot be split evenly over ", ranks, " expert-parallel ranks"));
  }
  if (balancing.interval > 0 && lanes.size() > 1) {
    return absl::InvalidArgumentError(
        "expert rebalancing and micro-batch overlap cannot be combined");
  }
  if (balancing.redundant < 0 || balancing.interval < 0) {
    return absl::InvalidArgumentError("expert rebalancing: negative redundancy or interval");
  }
  auto routed = std::unique_ptr<RoutedExperts>(
      new RoutedExperts(std::move(factory), lanes, num_experts, hidden, times, balancing));
  const int rank = lanes.empty() ? 0 : lanes[0]->rank();
  TESSERA_ASSIGN_OR_RETURN(routed->local_, routed->factory_(routed->placement_.experts_on(rank)));
  return routed;
}

RoutedExperts::RoutedExperts(ExpertFactory factory, std::vector<comm::Communicator*> lanes,
                             int32_t num_experts, int32_t hidden, MoeLayerTimes* times,
                             ExpertBalancing balancing)
    : factory_(std::move(factory)),
      lanes_(std::move(lanes)),
      times_(times),
      num_experts_(num_experts),
      hidden_(hidden),
      balancing_(lanes_.empty() ? ExpertBalancing{} : balancing),
      placement_(ExpertPlacement::Contiguous(num_experts, lanes_.empty() ? 1 : lanes_[0]->size())),
      token_counts_(new std::atomic<int64_t>[static_cast<size_t>(num_experts)]),
      window_(static_cast<size_t>(num_experts), 0) {
  for (int32_t e = 0; e < num_experts; ++e) token_counts_[e] = 0;
}

absl::Status RoutedExperts::MaybeRebalance(comm::Communicator& group) {
  if (balancing_.interval <= 0 || ++calls_ % balancing_.interval != 0) return absl::OkStatus();
  // Every rank reaches this at the same call, so the collective pairs up and all compute the
  // same placement from the same sums.
  TESSERA_RETURN_IF_ERROR(group.AllReduceSum(std::span<int64_t>(window_)));
  ExpertPlacement next = ExpertPlacement::Balanced(window_, group.size(), balancing_.redundant);
  std::fill(window_.begin(), window_.end(), 0);
  if (next == placement_) return absl::OkStatus();
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<ExpertBlock> block,
                           factory_(next.experts_on(group.rank())));
  local_ = std::move(block);
  placement_ = std::move(next);
  return absl::OkStatus();
}

std::vector<int64_t> RoutedExperts::token_counts() const {
  std::vector<int64_t> counts(static_cast<size_t>(num_experts_));
  for (int32_t e = 0; e < num_experts_; ++e) {
    counts[e] = token_counts_[e].load(std::memory_order_relaxed);
  }
  return counts;
}

ExpertTokenCounts CollectExpertTokenCounts(
    const std::vector<std::pair<int32_t, const RoutedExperts*>>& layers) {
  ExpertTokenCounts counts;
  for (const auto& [layer, routed] : layers) {
    counts.num_experts = routed->num_experts();
    counts.layers.push_back(layer);
    std::vector<int64_t> tokens = routed->token_counts();
    counts.tokens.insert(counts.tokens.end(), tokens.begin(), tokens.end());
  }
  return counts;
}

absl::Status RoutedExperts::Forward(const float* x, int64_t tokens, const int32_t* ids,
                                    const float* weights, int32_t top_k, float* out,
                                    kernels::ThreadPool& pool, int lane, ComputeBaton* baton) {
  for (int64_t i = 0; i < tokens * top_k; ++i) {
    token_counts_[ids[i]].fetch_add(1, std::memory_order_relaxed);
  }
  if (lanes_.empty()) {
    PhaseTimer timer(times_, &MoeLayerTimes::experts_ns);
    rows_computed_.fetch_add(tokens * top_k, std::memory_order_relaxed);
    if (times_ != nullptr) times_->expert_rows.fetch_add(tokens * top_k, std::memory_order_relaxed);
    local_->Forward(x, tokens, ids, weights, top_k, out, pool);
    return absl::OkStatus();
  }
  comm::Communicator& group = *lanes_[static_cast<size_t>(lane) % lanes_.size()];
  TESSERA_RETURN_IF_ERROR(MaybeRebalance(group));
  if (balancing_.interval > 0) {
    for (int64_t i = 0; i < tokens * top_k; ++i) ++window_[ids[i]];
  }
  std::optional<PhaseTimer> timer;
  timer.emplace(times_, &MoeLayerTimes::dispatch_ns);
  const int ranks = group.size();
  const int32_t slots_per_rank = placement_.slots_per_rank();
  // This rank's routed rows. Each goes to a copy of its expert: the one on this rank if
  // there is one, else one chosen by token index (spreading a hot expert's tokens).
  struct Routed {
    int32_t expert;
    int32_t slot;  // Global: rank * slots_per_rank + local slot.
    int64_t token;
    float weight;
  };
  std::vector<Routed> routed;
  routed.reserve(static_cast<size_t>(tokens * top_k));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int32_t j = 0; j < top_k; ++j) {
      const int32_t expert = ids[t * top_k + j];
      const std::span<const int32_t> copies = placement_.copies(expert);
      int32_t slot = copies[static_cast<size_t>(t) % copies.size()];
      for (int32_t c : copies) {
        if (c / slots_per_rank == group.rank()) slot = c;
      }
      routed.push_back({expert, slot, t, weights[t * top_k + j]});
    }
  }
  // Sent grouped by destination rank (then expert, token); added back by expert, then token:
  // the order the single-process block adds them in.
  std::stable_sort(routed.begin(), routed.end(), [&](const Routed& a, const Routed& b) {
    const int32_t ra = a.slot / slots_per_rank, rb = b.slot / slots_per_rank;
    return ra != rb ? ra < rb : a.expert < b.expert;
  });
  std::vector<size_t> add_order(routed.size());
  for (size_t i = 0; i < add_order.size(); ++i) add_order[i] = i;
  std::stable_sort(add_order.begin(), add_order.end(), [&](size_t a, size_t b) {
    return routed[a].expert != routed[b].expert ? routed[a].expert < routed[b].expert
                                                : routed[a].token < routed[b].token;
  });

  // 1. How many rows each rank gets from this one, and sends to it.
  std::vector<int64_t> rows_to(ranks, 0), rows_from(ranks, 0);
  for (const Routed& r : routed) ++rows_to[r.slot / slots_per_rank];
  const std::vector<int64_t> eight(ranks, sizeof(int64_t));
  {
    BatonYielded waiting(baton);
    TESSERA_RETURN_IF_ERROR(group.AllToAllV(Bytes(rows_to.data(), ranks * sizeof(int64_t)),
                                            eight,
                                            MutableBytes(rows_from.data(), ranks * sizeof(int64_t)),
                                            eight));
  }

  // 2. Dispatch: each row is its slot on the receiver and the token's activations.
  const size_t row_bytes = sizeof(int32_t) + sizeof(float) * hidden_;
  std::vector<std::byte> send(routed.size() * row_bytes);
  for (size_t i = 0; i < routed.size(); ++i) {
    const int32_t local_slot = routed[i].slot % slots_per_rank;
    std::memcpy(send.data() + i * row_bytes, &local_slot, sizeof(int32_t));
    std::memcpy(send.data() + i * row_bytes + sizeof(int32_t), x + routed[i].token * hidden_,
                sizeof(float) * hidden_);
  }
  int64_t received_rows = 0;
  for (int64_t n : rows_from) received_rows += n;
  std::vector<std::byte> received(static_cast<size_t>(received_rows) * row_bytes);
  std::vector<int64_t> send_bytes(ranks), recv_bytes(ranks);
  for (int r = 0; r < ranks; ++r) {
    send_bytes[r] = rows_to[r] * static_cast<int64_t>(row_bytes);
    recv_bytes[r] = rows_from[r] * static_cast<int64_t>(row_bytes);
  }
  {
    BatonYielded waiting(baton);
    TESSERA_RETURN_IF_ERROR(group.AllToAllV(send, send_bytes, received, recv_bytes));
  }

  // 3. This rank's experts on what it received, each row on its own.
  timer.emplace(times_, &MoeLayerTimes::experts_ns);
  std::vector<float> rows(static_cast<size_t>(received_rows) * hidden_);
  std::vector<int32_t> local_ids(static_cast<size_t>(received_rows));
  for (int64_t i = 0; i < received_rows; ++i) {
    std::memcpy(&local_ids[i], received.data() + i * row_bytes, sizeof(int32_t));
    if (local_ids[i] < 0 || local_ids[i] >= local_->num_experts()) {
      return absl::InternalError(absl::StrCat("expert-parallel dispatch: slot ", local_ids[i],
                                              " received on a rank with ", local_->num_experts()));
    }
    std::memcpy(rows.data() + i * hidden_, received.data() + i * row_bytes + sizeof(int32_t),
                sizeof(float) * hidden_);
  }
  std::vector<float> results(rows.size(), 0.0f);
  const std::vector<float> ones(static_cast<size_t>(received_rows), 1.0f);
  rows_computed_.fetch_add(received_rows, std::memory_order_relaxed);
  if (times_ != nullptr) times_->expert_rows.fetch_add(received_rows, std::memory_order_relaxed);
  local_->Forward(rows.data(), received_rows, local_ids.data(), ones.data(), 1, results.data(),
                  pool);

  // 4. Combine: the outputs go back to the ranks the rows came from, in the order they came.
  timer.emplace(times_, &MoeLayerTimes::combine_ns);
  std::vector<float> returned(routed.size() * static_cast<size_t>(hidden_));
  for (int r = 0; r < ranks; ++r) {
    send_bytes[r] = rows_from[r] * hidden_ * static_cast<int64_t>(sizeof(float));
    recv_bytes[r] = rows_to[r] * hidden_ * static_cast<int64_t>(sizeof(float));
  }
  {
    BatonYielded waiting(baton);
    TESSERA_RETURN_IF_ERROR(
        group.AllToAllV(Bytes(results.data(), results.size() * sizeof(float)), send_bytes,
                        MutableBytes(returned.data(), returned.size() * sizeof(float)),
                        recv_bytes));
  }
  for (size_t i : add_order) {
    float* dst = out + routed[i].token * hidden_;
    const float* src = returned.data() + i * hidden_;
    for (int32_t h = 0; h < hidden_; ++h) dst[h] += routed[i].weight * src[h];
  }
  return absl::OkStatus();
}

}  // namespace tessera::engine
