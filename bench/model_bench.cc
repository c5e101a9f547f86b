#include "bench/model_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/runtime/loaded_model.h"
#include "kernels/cpu_features.h"
#include "kvcache/block_allocator.h"
#include "nlohmann/json.hpp"

namespace tessera::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Deterministic, varied token ids (not all the same token, which would make attention and the
// caches unrealistically kind).
std::vector<int32_t> SyntheticTokens(int n, int vocab, uint32_t seed) {
  std::vector<int32_t> tokens(n);
  uint32_t x = seed * 2654435761u + 1;
  for (int i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    tokens[i] = static_cast<int32_t>(256 + (x >> 8) % static_cast<uint32_t>(vocab - 256));
  }
  return tokens;
}

class Bench {
 public:
  explicit Bench(engine::LoadedModel& m) : m_(m), config_(m.model->config()) {}

  // Prompt tokens per second for one sequence of `length` tokens in one step.
  absl::StatusOr<double> Prefill(int length, int repetitions) {
    TESSERA_ASSIGN_OR_RETURN(auto cache, MakeCache(1, length));
    std::vector<int32_t> tokens = SyntheticTokens(length, config_.vocab_size, 7);
    std::vector<kvcache::BlockId> blocks = Blocks(0, BlocksFor(length));
    std::vector<float> logits(config_.vocab_size);
    engine::SequenceStep step{tokens, 0, blocks, true};
    std::vector<double> rates;
    for (int r = 0; r <= repetitions; ++r) {  // The first run warms up.
      auto start = Clock::now();
      TESSERA_RETURN_IF_ERROR(m_.model->Forward({&step, 1}, *cache, logits));
      double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      if (r > 0) rates.push_back(length / seconds);
    }
    return Mean(rates);
  }

  // Generated tokens per second over `batch` sequences decoding together, each first
  // prefilled with `prompt` tokens, for `steps` steps.
  absl::StatusOr<double> Decode(int batch, int prompt, int steps) {
    const int positions = prompt + steps;
    TESSERA_ASSIGN_OR_RETURN(auto cache, MakeCache(batch, positions));
    const int per_seq = BlocksFor(positions);
    std::vector<std::vector<int32_t>> tokens(batch);
    std::vector<std::vector<kvcache::BlockId>> blocks(batch);
    std::vector<float> logits(static_cast<size_t>(batch) * config_.vocab_size);
    for (int s = 0; s < batch; ++s) {
      tokens[s] = SyntheticTokens(prompt, config_.vocab_size, 100 + s);
      blocks[s] = Blocks(s * per_seq, per_seq);
      engine::SequenceStep step{tokens[s], 0, blocks[s], true};
      TESSERA_RETURN_IF_ERROR(m_.model->Forward({&step, 1}, *cache, logits));
      tokens[s].push_back(Argmax(logits.data()));
    }
    std::vector<engine::SequenceStep> batch_steps(batch);
    auto start = Clock::now();
    for (int i = 0; i < steps; ++i) {
      for (int s = 0; s < batch; ++s) {
        int32_t pos = static_cast<int32_t>(tokens[s].size()) - 1;
        batch_steps[s] = {std::span<const int32_t>(tokens[s]).subspan(pos, 1), pos, blocks[s],
                          true};
      }
      TESSERA_RETURN_IF_ERROR(m_.model->Forward(batch_steps, *cache, logits));
      for (int s = 0; s < batch; ++s) {
        tokens[s].push_back(Argmax(logits.data() + static_cast<size_t>(s) * config_.vocab_size));
      }
    }
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return batch * steps / seconds;
  }

 private:
  int BlocksFor(int positions) const { return (positions + kBlockSize - 1) / kBlockSize; }

  absl::StatusOr<std::unique_ptr<kvcache::PagedKvCache>> MakeCache(int sequences, int positions) {
    return kvcache::PagedKvCache::Create(
        engine::KvShapeFor(config_, kBlockSize, sequences * BlocksFor(positions)));
  }

  static std::vector<kvcache::BlockId> Blocks(int first, int count) {
    std::vector<kvcache::BlockId> ids(count);
    std::iota(ids.begin(), ids.end(), first);
    return ids;
  }

  int32_t Argmax(const float* logits) const {
    return static_cast<int32_t>(std::max_element(logits, logits + config_.vocab_size) - logits);
  }

  static double Mean(const std::vector<double>& v) {
    return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  }

  static constexpr int kBlockSize = 16;
  engine::LoadedModel& m_;
  const engine::ModelConfig& config_;
};

}  // namespace

absl::Status RunModelBench(const ModelBenchOptions& options) {
  TESSERA_ASSIGN_OR_RETURN(engine::LoadedModel m,
                           engine::LoadedModel::Load(options.model_path, options.threads));
  Bench bench(m);
  const std::string isa(kernels::IsaName(kernels::DefaultIsa()));
  if (!options.json) {
    std::printf("model %s, %d threads, kernels %s\n", options.model_path.c_str(), options.threads,
                isa.c_str());
  }
  nlohmann::json report = {
      {"model", options.model_path}, {"threads", options.threads}, {"isa", isa}};
  for (int length : options.prefill_lengths) {
    if (length < 1 || length > m.model->config().context_length) {
      return absl::InvalidArgumentError(absl::StrCat("prefill length ", length, " is outside 1..",
                                                     m.model->config().context_length));
    }
    TESSERA_ASSIGN_OR_RETURN(double rate, bench.Prefill(length, options.repetitions));
    if (!options.json) std::printf("prefill %4d tokens: %9.1f tokens/s\n", length, rate);
    std::fflush(stdout);
    report["prefill_tokens_per_s"][std::to_string(length)] = rate;
  }
  for (int batch : options.decode_batches) {
    if (batch < 1)
      return absl::InvalidArgumentError(absl::StrCat("decode batch ", batch, " must be >= 1"));
    TESSERA_ASSIGN_OR_RETURN(double rate,
                             bench.Decode(batch, options.decode_prompt, options.decode_steps));
    if (!options.json) std::printf("decode batch %3d:    %9.1f tokens/s\n", batch, rate);
    std::fflush(stdout);
    report["decode_tokens_per_s"][std::to_string(batch)] = rate;
  }
  if (options.json) std::printf("%s\n", report.dump().c_str());
  return absl::OkStatus();
}

}  // namespace tessera::bench
