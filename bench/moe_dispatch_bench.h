// `tessera bench moe-dispatch`: the communication of an expert-parallel MoE layer. R ranks
// (threads of this process, each with its own Gloo connections over loopback TCP) route
// `tokens` tokens each to top-k of E experts spread over the ranks, then run the layer's
// dispatch (counts, then rows of activations to the experts' ranks) and combine (the outputs
// back), as RoutedExperts does. Reports rank 0's median latency of each and the bytes
// it moved per second, beside memcpy of the same bytes in one thread.
// Thread-compatible.
#ifndef TESSERA_BENCH_MOE_DISPATCH_BENCH_H_
#define TESSERA_BENCH_MOE_DISPATCH_BENCH_H_

#include <vector>

#include "absl/status/status.h"

namespace tessera::bench {

struct MoeDispatchBenchOptions {
  std::vector<int> ranks = {2, 4};
  std::vector<int> tokens = {16, 128, 512};  // Per rank.
  std::vector<int> hidden = {256, 2048};
  int experts = 64;
  int top_k = 8;
  int repetitions = 20;
  bool json = false;
};

absl::Status RunMoeDispatchBench(const MoeDispatchBenchOptions& options);

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_MOE_DISPATCH_BENCH_H_
