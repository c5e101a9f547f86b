// `tessera bench moe-layer`: where an expert-parallel MoE model's step time goes, and how
// much of its communication micro-batch overlap hides. R ranks (threads of this process, each
// with its own compute pool, KV cache and Gloo connections over loopback) run decode steps of
// a Qwen3-MoE model with synthetic weights, each rank with `tokens` sequences, first as one
// micro-batch per step, then as two whose dispatch and combine overlap each other's compute
// (every step split, then only steps of ModelOptions::overlap_min_tokens tokens or more).
// For each it reports rank 0's median step time and its MoE phases per step (routing,
// dispatch, expert matmuls, combine; the rest is attention, norms and logits), and the share
// of the sequential run's communication the overlap removed from the step:
//   hidden = (step_sequential - step_overlapped) / (dispatch + combine)_sequential.
// A third run adds the expert rebalancer (EPLB) to the sequential one; every run reports how
// evenly the ranks shared the expert work: the busiest rank's expert rows over the mean.
// Thread-compatible.
#ifndef TESSERA_BENCH_MOE_LAYER_BENCH_H_
#define TESSERA_BENCH_MOE_LAYER_BENCH_H_

#include <vector>

#include "absl/status/status.h"

namespace tessera::bench {

struct MoeLayerBenchOptions {
  int ranks = 2;
  std::vector<int> tokens = {16, 64, 256};  // Decode sequences per rank.
  int hidden = 1024;
  int moe_intermediate = 256;
  int experts = 32;
  int top_k = 8;
  int layers = 2;
  int threads = 1;  // Compute threads per rank.
  int steps = 20;   // Timed decode steps (after warm-up steps).
  // A third run with the expert rebalancer: extra slots per rank, steps between rebalances.
  int redundant = 1;
  int rebalance_interval = 4;
  // Skewed routing, as real routers have: the first `hot_experts` experts' router rows are
  // `hot_scale` times stronger, so they are chosen more often.
  int hot_experts = 2;
  double hot_scale = 4.0;
  bool json = false;
};

absl::Status RunMoeLayerBench(const MoeLayerBenchOptions& options);

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_MOE_LAYER_BENCH_H_
