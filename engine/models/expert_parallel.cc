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
    int64_t intermediate, const std::vector<comm::Communicator*>& lanes, MoeLayerTimes* times) {
  const comm::Communicator* group = lanes.empty() ? nullptr : lanes[0];
  const int64_t ranks = group == nullptr ? 1 : group->size();
  if (num_experts % ranks != 0) {
    return absl::InvalidArgumentError(absl::StrCat(checkpoint.directory(), ": ", num_experts,
                                                   " experts cannot be split evenly over ", ranks,
                                                   " expert-parallel ranks"));
  }
  const int64_t per_rank = num_experts / ranks;
  const int64_t first = group == nullptr ? 0 : group->rank() * per_rank;
  std::vector<ExpertWeights> weights;
  for (int64_t e = first; e < first + per_rank; ++e) {
    TESSERA_ASSIGN_OR_RETURN(ExpertWeights w, LoadSwiGlu(checkpoint, absl::StrCat(prefix, e, "."),
                                                         hidden, intermediate));
    weights.push_back(std::move(w));
  }
  return Create(std::make_unique<MoeExperts>(hidden, intermediate, std::move(weights)),
                static_cast<int32_t>(num_experts), static_cast<int32_t>(hidden), lanes, times);
}

absl::StatusOr<std::unique_ptr<RoutedExperts>> RoutedExperts::Create(
    std::unique_ptr<ExpertBlock> local, int32_t num_experts, int32_t hidden,
    const std::vector<comm::Communicator*>& lanes, MoeLayerTimes* times) {
  const int ranks = lanes.empty() ? 1 : lanes[0]->size();
  for (const comm::Communicator* lane : lanes) {
    if (lane->size() != ranks || lane->rank() != lanes[0]->rank()) {
      return absl::InvalidArgumentError("the expert-parallel lanes are not over the same ranks");
    }
  }
  if (num_experts % ranks != 0 || local->num_experts() != num_experts / ranks) {
    return absl::InvalidArgumentError(absl::StrCat("this rank holds ", local->num_experts(),
                                                   " experts, not ", num_experts, " / ", ranks));
  }
  return std::unique_ptr<RoutedExperts>(
      new RoutedExperts(lanes, num_experts, hidden, std::move(local), times));
}

RoutedExperts::RoutedExperts(std::vector<comm::Communicator*> lanes, int32_t num_experts,
                             int32_t hidden, std::unique_ptr<ExpertBlock> local,
                             MoeLayerTimes* times)
    : lanes_(std::move(lanes)),
      times_(times),
      num_experts_(num_experts),
      per_rank_(num_experts / (lanes_.empty() ? 1 : lanes_[0]->size())),
      hidden_(hidden),
      local_(std::move(local)),
      token_counts_(new std::atomic<int64_t>[static_cast<size_t>(num_experts)]) {
  for (int32_t e = 0; e < num_experts; ++e) token_counts_[e] = 0;
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
                                    kernels::ThreadPool& pool, int lane) {
  for (int64_t i = 0; i < tokens * top_k; ++i) {
    token_counts_[ids[i]].fetch_add(1, std::memory_order_relaxed);
  }
  if (lanes_.empty()) {
    PhaseTimer timer(times_ == nullptr ? nullptr : &times_->experts_ns);
    local_->Forward(x, tokens, ids, weights, top_k, out, pool);
    return absl::OkStatus();
  }
  comm::Communicator& group = *lanes_[static_cast<size_t>(lane) % lanes_.size()];
  std::optional<PhaseTimer> timer;
  timer.emplace(times_ == nullptr ? nullptr : &times_->dispatch_ns);
  const int ranks = group.size();
  // This rank's routed rows, by expert then token: the order the single-process block adds
  // them in.
  struct Routed {
    int32_t expert;
    int64_t token;
    float weight;
  };
  std::vector<Routed> routed;
  routed.reserve(static_cast<size_t>(tokens * top_k));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int32_t j = 0; j < top_k; ++j) {
      routed.push_back({ids[t * top_k + j], t, weights[t * top_k + j]});
    }
  }
  std::stable_sort(routed.begin(), routed.end(),
                   [](const Routed& a, const Routed& b) { return a.expert < b.expert; });

  // 1. How many rows each rank gets from this one, and sends to it.
  std::vector<int64_t> rows_to(ranks, 0), rows_from(ranks, 0);
  for (const Routed& r : routed) ++rows_to[r.expert / per_rank_];
  const std::vector<int64_t> eight(ranks, sizeof(int64_t));
  TESSERA_RETURN_IF_ERROR(group.AllToAllV(Bytes(rows_to.data(), ranks * sizeof(int64_t)), eight,
                                          MutableBytes(rows_from.data(), ranks * sizeof(int64_t)),
                                          eight));

  // 2. Dispatch: each row is its expert (local to the receiver) and the token's activations.
  const size_t row_bytes = sizeof(int32_t) + sizeof(float) * hidden_;
  std::vector<std::byte> send(routed.size() * row_bytes);
  for (size_t i = 0; i < routed.size(); ++i) {
    const int32_t local_expert = routed[i].expert % per_rank_;
    std::memcpy(send.data() + i * row_bytes, &local_expert, sizeof(int32_t));
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
  TESSERA_RETURN_IF_ERROR(group.AllToAllV(send, send_bytes, received, recv_bytes));

  // 3. This rank's experts on what it received, each row on its own.
  timer.emplace(times_ == nullptr ? nullptr : &times_->experts_ns);
  std::vector<float> rows(static_cast<size_t>(received_rows) * hidden_);
  std::vector<int32_t> local_ids(static_cast<size_t>(received_rows));
  for (int64_t i = 0; i < received_rows; ++i) {
    std::memcpy(&local_ids[i], received.data() + i * row_bytes, sizeof(int32_t));
    std::memcpy(rows.data() + i * hidden_, received.data() + i * row_bytes + sizeof(int32_t),
                sizeof(float) * hidden_);
  }
  std::vector<float> results(rows.size(), 0.0f);
  const std::vector<float> ones(static_cast<size_t>(received_rows), 1.0f);
  local_->Forward(rows.data(), received_rows, local_ids.data(), ones.data(), 1, results.data(),
                  pool);

  // 4. Combine: the outputs go back to the ranks the rows came from, in the order they came.
  timer.emplace(times_ == nullptr ? nullptr : &times_->combine_ns);
  std::vector<float> returned(routed.size() * static_cast<size_t>(hidden_));
  for (int r = 0; r < ranks; ++r) {
    send_bytes[r] = rows_from[r] * hidden_ * static_cast<int64_t>(sizeof(float));
    recv_bytes[r] = rows_to[r] * hidden_ * static_cast<int64_t>(sizeof(float));
  }
  TESSERA_RETURN_IF_ERROR(
      group.AllToAllV(Bytes(results.data(), results.size() * sizeof(float)), send_bytes,
                      MutableBytes(returned.data(), returned.size() * sizeof(float)), recv_bytes));
  for (size_t i = 0; i < routed.size(); ++i) {
    float* dst = out + routed[i].token * hidden_;
    const float* src = returned.data() + i * hidden_;
    for (int32_t h = 0; h < hidden_; ++h) dst[h] += routed[i].weight * src[h];
  }
  return absl::OkStatus();
}

}  // namespace tessera::engine
