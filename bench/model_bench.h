// `tessera bench model`: prefill and batched decode throughput of the model runtime on this
// machine, measured the way llama.cpp's llama-bench (prefill) and llama-batched-bench
// (decode) measure theirs, so scripts/bench_vs_llamacpp can put the figures side by side.
// Thread-compatible.
#ifndef TESSERA_BENCH_MODEL_BENCH_H_
#define TESSERA_BENCH_MODEL_BENCH_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tessera::bench {

struct ModelBenchOptions {
  std::string model_path;
  int threads = 2;
  std::vector<int> prefill_lengths = {128, 512};
  std::vector<int> decode_batches = {1, 8, 16, 32, 64};
  int decode_prompt = 128;  // Tokens each sequence holds before decoding starts.
  int decode_steps = 128;   // Tokens generated per sequence.
  int repetitions = 3;
  bool json = false;
};

absl::Status RunModelBench(const ModelBenchOptions& options);

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_MODEL_BENCH_H_
