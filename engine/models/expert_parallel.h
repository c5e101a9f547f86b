// A layer's routed experts, in this process or spread over an expert-parallel group. In a
// group, each of R ranks (processes) holds E/R of the layer's experts, and every rank runs
// attention on its own sequences. Per MoE layer:
//   1. each rank sends every routed (token, expert) row to the rank holding that expert
//      (all-to-all(v): the dispatch), after telling each rank how many rows to expect;
//   2. ranks run their experts on the rows they received;
//   3. the outputs go back the same way (the combine), and each rank adds them, weighted, to
//      its tokens.
// Rows travel sorted by expert and the combine adds them in expert order, exactly as the
// single-process MoeExperts does, so the result is the same to the bit for any group size.
// Every rank must call Forward for every MoE layer of every step, with zero tokens if it has
// none: the collectives need the whole group.
// Thread-safety: not reentrant.
#ifndef TESSERA_ENGINE_MODELS_EXPERT_PARALLEL_H_
#define TESSERA_ENGINE_MODELS_EXPERT_PARALLEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "comm/communicator.h"
#include "engine/models/moe_experts.h"
#include "engine/safetensors/hf_checkpoint.h"

namespace tessera::engine {

class RoutedExperts {
 public:
  // Loads the routed experts under `prefix` ("<prefix><e>.gate_proj.weight", ...): all of
  // them, or with an expert-parallel `group` (may be null) this rank's share, global ids
  // [rank * E/R, (rank + 1) * E/R). InvalidArgument if E does not split evenly over the group.
  static absl::StatusOr<std::unique_ptr<RoutedExperts>> Load(const HfCheckpoint& checkpoint,
                                                             const std::string& prefix,
                                                             int64_t num_experts, int64_t hidden,
                                                             int64_t intermediate,
                                                             comm::Communicator* group);

  // As MoeExperts::Forward, with global expert ids; across the group if there is one.
  absl::Status Forward(const float* x, int64_t tokens, const int32_t* ids, const float* weights,
                       int32_t top_k, float* out, kernels::ThreadPool& pool);

 private:
  RoutedExperts(comm::Communicator* group, int32_t num_experts, int32_t hidden,
                std::unique_ptr<MoeExperts> local);

  comm::Communicator* const group_;  // Null: every expert is here.
  const int32_t num_experts_;
  const int32_t per_rank_;
  const int32_t hidden_;
  std::unique_ptr<MoeExperts> local_;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_EXPERT_PARALLEL_H_
