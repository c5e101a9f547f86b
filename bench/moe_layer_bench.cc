#include "bench/moe_layer_bench.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/str_cat.h"
#include "comm/gloo_communicator.h"
#include "comm/local_key_value_store.h"
#include "engine/models/expert_parallel.h"
#include "engine/models/qwen3_moe.h"
#include "engine/safetensors/synthetic_weights.h"
#include "kvcache/paged_kv_cache.h"

namespace tessera::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kVocab = 1024;
constexpr int kHeads = 8;
constexpr int kKvHeads = 4;
constexpr int kHeadDim = 64;
constexpr int kBlockSize = 16;
constexpr int kWarmupSteps = 3;
constexpr uint64_t kSeed = 7;

// A Qwen3-MoE checkpoint of the bench's shape, with synthetic weights scaled like an
// initialized model's (uniform, half-width 1/sqrt(fan-in)).
absl::Status WriteCheckpoint(const std::string& dir, const MoeLayerBenchOptions& o) {
  std::filesystem::create_directories(dir);
  const nlohmann::json config = {{"model_type", "qwen3_moe"},
                                 {"vocab_size", kVocab},
                                 {"hidden_size", o.hidden},
                                 {"intermediate_size", o.moe_intermediate},
                                 {"moe_intermediate_size", o.moe_intermediate},
                                 {"num_hidden_layers", o.layers},
                                 {"num_attention_heads", kHeads},
                                 {"num_key_value_heads", kKvHeads},
                                 {"head_dim", kHeadDim},
                                 {"num_experts", o.experts},
                                 {"num_experts_per_tok", o.top_k},
                                 {"norm_topk_prob", true},
                                 {"decoder_sparse_step", 1},
                                 {"max_position_embeddings", 4096},
                                 {"rms_norm_eps", 1e-6},
                                 {"rope_theta", 1e6}};
  std::ofstream(dir + "/config.json") << config.dump(1);
  const int64_t h = o.hidden, inter = o.moe_intermediate;
  auto linear = [](std::string name, int64_t out, int64_t in) {
    return engine::SyntheticTensor{
        std::move(name), {out, in}, 1.0 / std::sqrt(double(in)), 0.0, {}};
  };
  auto norm = [](std::string name, int64_t n) {
    return engine::SyntheticTensor{std::move(name), {n}, 0.1, 1.0, {}};
  };
  std::vector<engine::SyntheticTensor> tensors = {
      {"model.embed_tokens.weight", {kVocab, h}, 1.0, 0.0, {}},
      linear("lm_head.weight", kVocab, h),
      norm("model.norm.weight", h)};
  for (int l = 0; l < o.layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    tensors.push_back(norm(p + "input_layernorm.weight", h));
    tensors.push_back(norm(p + "post_attention_layernorm.weight", h));
    tensors.push_back(linear(p + "self_attn.q_proj.weight", kHeads * kHeadDim, h));
    tensors.push_back(linear(p + "self_attn.k_proj.weight", kKvHeads * kHeadDim, h));
    tensors.push_back(linear(p + "self_attn.v_proj.weight", kKvHeads * kHeadDim, h));
    tensors.push_back(linear(p + "self_attn.o_proj.weight", h, kHeads * kHeadDim));
    tensors.push_back(norm(p + "self_attn.q_norm.weight", kHeadDim));
    tensors.push_back(norm(p + "self_attn.k_norm.weight", kHeadDim));
    engine::SyntheticTensor router = linear(p + "mlp.gate.weight", o.experts, h);
    router.row_scales.assign(static_cast<size_t>(o.experts), 1.0);
    for (int e = 0; e < std::min(o.hot_experts, o.experts); ++e) router.row_scales[e] = o.hot_scale;
    tensors.push_back(std::move(router));
    for (int e = 0; e < o.experts; ++e) {
      const std::string q = absl::StrCat(p, "mlp.experts.", e, ".");
      tensors.push_back(linear(q + "gate_proj.weight", inter, h));
      tensors.push_back(linear(q + "up_proj.weight", inter, h));
      tensors.push_back(linear(q + "down_proj.weight", h, inter));
    }
  }
  return engine::WriteSyntheticSafetensors(dir + "/model.safetensors", kSeed, tensors);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Rank 0's figures for one run, per step in microseconds.
struct Figures {
  double step_us = 0, routing_us = 0, dispatch_us = 0, experts_us = 0, combine_us = 0;
  double cpu_us = 0;            // CPU time of the whole process (every rank) per step.
  double expert_imbalance = 0;  // The busiest rank's expert rows over the ranks' mean.
};

// kOverlapped splits every step into two micro-batches; kAuto only steps of at least
// ModelOptions::overlap_min_tokens (the default a worker runs with).
enum class Mode { kSequential, kOverlapped, kAuto, kRebalanced };

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kSequential:
      return "sequential";
    case Mode::kOverlapped:
      return "overlapped";
    case Mode::kAuto:
      return "auto";
    case Mode::kRebalanced:
      return "rebalanced";
  }
  return "";
}

double ProcessCpuMicros() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return 1e6 * (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + usage.ru_utime.tv_usec +
         usage.ru_stime.tv_usec;
}

// Runs one rank; rank 0 fills `figures`, every rank its timed steps' expert rows.
absl::Status RunRank(const std::string& dir, comm::Communicator& lane0, comm::Communicator* lane1,
                     const MoeLayerBenchOptions& o, int tokens, bool rebalance,
                     int32_t overlap_min_tokens, Figures* figures, int64_t* expert_rows) {
  kernels::ThreadPool pool(o.threads);
  engine::MoeLayerTimes times;
  absl::StatusOr<std::unique_ptr<engine::Model>> model =
      engine::LoadQwen3Moe(dir, {.pool = &pool,
                                 .expert_group = &lane0,
                                 .overlap_group = lane1,
                                 .overlap_min_tokens = overlap_min_tokens,
                                 .redundant_experts = rebalance ? o.redundant : 0,
                                 .rebalance_interval = rebalance ? o.rebalance_interval : 0,
                                 .moe_times = &times});
  if (!model.ok()) return model.status();
  const int total_steps = kWarmupSteps + o.steps;
  const int blocks_per_sequence = (total_steps + kBlockSize - 1) / kBlockSize;
  absl::StatusOr<std::unique_ptr<kvcache::PagedKvCache>> cache = kvcache::PagedKvCache::Create(
      engine::KvShapeFor((*model)->config(), kBlockSize, tokens * blocks_per_sequence));
  if (!cache.ok()) return cache.status();
  std::vector<std::vector<kvcache::BlockId>> tables(static_cast<size_t>(tokens));
  for (int s = 0; s < tokens; ++s) {
    for (int b = 0; b < blocks_per_sequence; ++b) tables[s].push_back(s * blocks_per_sequence + b);
  }
  std::vector<int32_t> ids(static_cast<size_t>(tokens));
  std::vector<float> logits(static_cast<size_t>(tokens) * kVocab);
  std::vector<double> steps;
  int64_t base[5] = {};
  for (int step = 0; step < total_steps; ++step) {
    std::vector<engine::SequenceStep> batch;
    for (int s = 0; s < tokens; ++s) {
      ids[s] = (lane0.rank() * 7919 + s * 31 + step * 17) % kVocab;
      batch.push_back({.tokens = std::span<const int32_t>(&ids[s], 1),
                       .start_pos = step,
                       .block_table = tables[s]});
    }
    if (absl::Status s = lane0.Barrier(); !s.ok()) return s;  // Steps start together.
    if (step == kWarmupSteps) {
      if (figures != nullptr) figures->cpu_us = -ProcessCpuMicros();
      base[0] = times.routing_ns;
      base[1] = times.dispatch_ns;
      base[2] = times.experts_ns;
      base[3] = times.combine_ns;
      base[4] = times.expert_rows;
    }
    const auto start = Clock::now();
    if (absl::Status s = (*model)->Forward(batch, **cache, logits); !s.ok()) return s;
    if (step >= kWarmupSteps) {
      steps.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    }
  }
  *expert_rows = times.expert_rows - base[4];
  if (figures == nullptr) return absl::OkStatus();
  figures->cpu_us = (figures->cpu_us + ProcessCpuMicros()) / o.steps;
  const double per_step = 1e3 * o.steps;  // ns totals -> us per step.
  figures->step_us = Median(steps);
  figures->routing_us = (times.routing_ns - base[0]) / per_step;
  figures->dispatch_us = (times.dispatch_ns - base[1]) / per_step;
  figures->experts_us = (times.experts_ns - base[2]) / per_step;
  figures->combine_us = (times.combine_ns - base[3]) / per_step;
  return absl::OkStatus();
}

absl::StatusOr<Figures> RunGroup(const std::string& dir, const MoeLayerBenchOptions& o, int tokens,
                                 Mode mode, int run) {
  comm::LocalKeyValueStore store;
  const std::string name = absl::StrCat("moe-layer-", run);
  const bool overlap = mode == Mode::kOverlapped || mode == Mode::kAuto;
  const int32_t min_tokens =
      mode == Mode::kOverlapped ? 0 : engine::ModelOptions{}.overlap_min_tokens;
  std::vector<absl::Status> results(static_cast<size_t>(o.ranks));
  std::vector<int64_t> expert_rows(static_cast<size_t>(o.ranks));
  Figures figures;
  std::vector<std::thread> threads;
  for (int rank = 0; rank < o.ranks; ++rank) {
    threads.emplace_back([&, rank] {
      auto lane0 = comm::GlooCommunicator::Connect(store, name, rank, o.ranks, {});
      if (!lane0.ok()) {
        results[rank] = lane0.status();
        return;
      }
      absl::StatusOr<std::unique_ptr<comm::GlooCommunicator>> lane1;
      if (overlap) {
        lane1 = comm::GlooCommunicator::Connect(store, name + "-lane1", rank, o.ranks, {});
        if (!lane1.ok()) {
          results[rank] = lane1.status();
          return;
        }
      }
      results[rank] =
          RunRank(dir, **lane0, overlap ? lane1->get() : nullptr, o, tokens,
                  mode == Mode::kRebalanced, min_tokens, rank == 0 ? &figures : nullptr,
                  &expert_rows[rank]);
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : results) {
    if (!s.ok()) return s;
  }
  double total = 0, busiest = 0;
  for (int64_t r : expert_rows) {
    total += static_cast<double>(r);
    busiest = std::max(busiest, static_cast<double>(r));
  }
  figures.expert_imbalance = total > 0 ? busiest / (total / o.ranks) : 0.0;
  return figures;
}

}  // namespace

absl::Status RunMoeLayerBench(const MoeLayerBenchOptions& o) {
  if (o.ranks < 1 || o.experts % o.ranks != 0 || o.top_k > o.experts) {
    return absl::InvalidArgumentError(absl::StrCat("--ranks ", o.ranks, " must divide --experts ",
                                                   o.experts, " and --top-k be at most it"));
  }
  const std::string dir =
      (std::filesystem::temp_directory_path() / absl::StrCat("tessera-moe-layer-", ::getpid()))
          .string();
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  if (absl::Status s = WriteCheckpoint(dir, o); !s.ok()) return s;

  nlohmann::json rows = nlohmann::json::array();
  if (!o.json) {
    std::printf(
        "EP %d, hidden %d, moe_intermediate %d, %d experts (%d hot, router rows x%.1f), top-%d,"
        " %d layers, %d thread(s) per rank; rebalanced: %d extra slot(s) per rank every %d"
        " steps; per step, rank 0, microseconds\n",
        o.ranks, o.hidden, o.moe_intermediate, o.experts, o.hot_experts, o.hot_scale, o.top_k,
        o.layers, o.threads, o.redundant, o.rebalance_interval);
    std::printf("%7s %11s | %9s %8s %9s %9s %9s %9s | %7s | %9s | %9s\n", "tokens", "mode", "step",
                "routing", "dispatch", "experts", "combine", "other", "hidden", "cpu", "imbalance");
  }
  int run = 0;
  for (int tokens : o.tokens) {
    Figures sequential;
    for (Mode mode : {Mode::kSequential, Mode::kOverlapped, Mode::kAuto, Mode::kRebalanced}) {
      if (mode == Mode::kRebalanced && (o.ranks < 2 || o.rebalance_interval <= 0)) continue;
      const bool overlap = mode == Mode::kOverlapped || mode == Mode::kAuto;
      absl::StatusOr<Figures> f = RunGroup(dir, o, tokens, mode, run++);
      if (!f.ok()) return f.status();
      if (mode == Mode::kSequential) sequential = *f;
      const double comm = sequential.dispatch_us + sequential.combine_us;
      const double hidden = overlap && comm > 0 ? (sequential.step_us - f->step_us) / comm : 0.0;
      const double other =
          f->step_us - f->routing_us - f->dispatch_us - f->experts_us - f->combine_us;
      rows.push_back({{"ranks", o.ranks},
                      {"tokens_per_rank", tokens},
                      {"mode", ModeName(mode)},
                      {"step_us", f->step_us},
                      {"routing_us", f->routing_us},
                      {"dispatch_us", f->dispatch_us},
                      {"experts_us", f->experts_us},
                      {"combine_us", f->combine_us},
                      {"hidden_fraction", hidden},
                      {"process_cpu_us", f->cpu_us},
                      {"expert_imbalance", f->expert_imbalance}});
      if (!o.json) {
        std::printf(
            "%7d %11s | %9.0f %8.0f %9.0f %9.0f %9.0f %9.0f | %7s | %9.0f | %9.2f\n", tokens,
            ModeName(mode), f->step_us, f->routing_us, f->dispatch_us, f->experts_us, f->combine_us,
            other,
            overlap ? absl::StrCat(static_cast<int>(std::lround(hidden * 100)), "%").c_str() : "",
            f->cpu_us, f->expert_imbalance);
      }
    }
  }
  if (!o.json) {
    std::printf(
        "overlapped: every step as two micro-batches taking turns on the rank's compute; auto:"
        " only steps of at least %d tokens; their phases add up both micro-batches (dispatch"
        " and combine include waiting for the other's turn), so they can exceed the"
        " step; hidden = (sequential step - overlapped step) / sequential"
        " (dispatch + combine); cpu: the process's CPU time per step, every rank;"
        " imbalance: the busiest rank's expert rows over the mean (1 is even)\n",
        engine::ModelOptions{}.overlap_min_tokens);
  }
  if (o.json) std::printf("%s\n", rows.dump(1).c_str());
  return absl::OkStatus();
}

}  // namespace tessera::bench
