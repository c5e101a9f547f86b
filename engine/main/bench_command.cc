#include "engine/main/bench_command.h"

#include <cstdio>

#include "engine/runtime/loaded_model.h"

namespace tessera::engine {

BenchCommand::BenchCommand(CLI::App& app) {
  command_ = app.add_subcommand("bench", "Benchmarks");
  command_->require_subcommand(1);
  model_ = command_->add_subcommand(
      "model",
      "Prefill and batched-decode throughput of the model runtime (compare with llama-bench)");
  model_options_.model_path = DefaultModelPath();
  model_->add_option("--model", model_options_.model_path, "GGUF model file")
      ->check(CLI::ExistingFile);
  model_->add_option("--threads", model_options_.threads, "Compute threads")
      ->check(CLI::Range(1, 1024));
  model_->add_option("--prefill", model_options_.prefill_lengths, "Prompt lengths to prefill")
      ->delimiter(',');
  model_->add_option("--batches", model_options_.decode_batches, "Decode batch sizes")
      ->delimiter(',');
  model_
      ->add_option("--decode-prompt", model_options_.decode_prompt,
                   "Tokens per sequence before decoding")
      ->check(CLI::Range(1, 1 << 20));
  model_->add_option("--decode-steps", model_options_.decode_steps, "Decode steps per batch size")
      ->check(CLI::Range(1, 1 << 20));
  model_
      ->add_option("--repetitions", model_options_.repetitions,
                   "Timed prefill runs (after one warm-up)")
      ->check(CLI::Range(1, 1000));
  model_->add_flag("--json", model_options_.json, "Print one JSON object");

  kv_transfer_ = command_->add_subcommand(
      "kv-transfer",
      "KV handoff bandwidth between two processes (shared memory, gRPC) against memcpy");
  kv_transfer_
      ->add_option("--positions", kv_transfer_options_.positions,
                   "Prompt lengths whose KV is moved")
      ->delimiter(',');
  kv_transfer_->add_option("--repetitions", kv_transfer_options_.repetitions, "Timed runs")
      ->check(CLI::Range(1, 10000));
  kv_transfer_->add_flag("--json", kv_transfer_options_.json, "Print JSON");

  moe_dispatch_ = command_->add_subcommand(
      "moe-dispatch",
      "Expert-parallel dispatch and combine over Gloo (ranks as threads) against memcpy");
  moe_dispatch_->add_option("--ranks", moe_dispatch_options_.ranks, "Group sizes")->delimiter(',');
  moe_dispatch_->add_option("--tokens", moe_dispatch_options_.tokens, "Tokens per rank")
      ->delimiter(',');
  moe_dispatch_->add_option("--hidden", moe_dispatch_options_.hidden, "Hidden sizes")
      ->delimiter(',');
  moe_dispatch_->add_option("--experts", moe_dispatch_options_.experts, "Routed experts")
      ->check(CLI::Range(1, 4096));
  moe_dispatch_->add_option("--top-k", moe_dispatch_options_.top_k, "Experts per token")
      ->check(CLI::Range(1, 64));
  moe_dispatch_->add_option("--repetitions", moe_dispatch_options_.repetitions, "Timed runs")
      ->check(CLI::Range(1, 10000));
  moe_dispatch_->add_flag("--json", moe_dispatch_options_.json, "Print JSON");

  moe_layer_ = command_->add_subcommand(
      "moe-layer", "Expert-parallel MoE step time by phase, with and without micro-batch overlap");
  moe_layer_->add_option("--ranks", moe_layer_options_.ranks, "Expert-parallel group size")
      ->check(CLI::Range(1, 64));
  moe_layer_->add_option("--tokens", moe_layer_options_.tokens, "Decode sequences per rank")
      ->delimiter(',')
      ->check(CLI::Range(1, 1 << 16));
  moe_layer_->add_option("--hidden", moe_layer_options_.hidden, "Hidden size")
      ->check(CLI::Range(64, 1 << 16));
  moe_layer_
      ->add_option("--moe-intermediate", moe_layer_options_.moe_intermediate,
                   "Each expert's intermediate size")
      ->check(CLI::Range(1, 1 << 16));
  moe_layer_->add_option("--experts", moe_layer_options_.experts, "Routed experts")
      ->check(CLI::Range(1, 1024));
  moe_layer_->add_option("--top-k", moe_layer_options_.top_k, "Experts per token")
      ->check(CLI::Range(1, 64));
  moe_layer_->add_option("--layers", moe_layer_options_.layers, "MoE layers")
      ->check(CLI::Range(1, 64));
  moe_layer_->add_option("--threads", moe_layer_options_.threads, "Compute threads per rank")
      ->check(CLI::Range(1, 256));
  moe_layer_->add_option("--steps", moe_layer_options_.steps, "Timed decode steps")
      ->check(CLI::Range(1, 100000));
  moe_layer_
      ->add_option("--redundant", moe_layer_options_.redundant,
                   "Rebalanced run: extra expert slots per rank")
      ->check(CLI::Range(0, 1024));
  moe_layer_
      ->add_option("--rebalance-interval", moe_layer_options_.rebalance_interval,
                   "Rebalanced run: steps between rebalances (0: no rebalanced run)")
      ->check(CLI::Range(0, 1 << 20));
  moe_layer_
      ->add_option("--hot-experts", moe_layer_options_.hot_experts,
                   "Skewed routing: this many experts get stronger router rows")
      ->check(CLI::Range(0, 1024));
  moe_layer_
      ->add_option("--hot-scale", moe_layer_options_.hot_scale, "Skewed routing: how much stronger")
      ->check(CLI::Range(0.0, 100.0));
  moe_layer_->add_flag("--json", moe_layer_options_.json, "Print JSON");
}

int BenchCommand::Run() {
  if (model_->parsed()) {
    absl::Status status = bench::RunModelBench(model_options_);
    if (!status.ok()) {
      std::fprintf(stderr, "tessera bench model: %s\n", status.ToString().c_str());
      return 1;
    }
    return 0;
  }
  if (kv_transfer_->parsed()) {
    absl::Status status = bench::RunKvTransferBench(kv_transfer_options_);
    if (!status.ok()) {
      std::fprintf(stderr, "tessera bench kv-transfer: %s\n", status.ToString().c_str());
      return 1;
    }
    return 0;
  }
  if (moe_dispatch_->parsed()) {
    absl::Status status = bench::RunMoeDispatchBench(moe_dispatch_options_);
    if (!status.ok()) {
      std::fprintf(stderr, "tessera bench moe-dispatch: %s\n", status.ToString().c_str());
      return 1;
    }
    return 0;
  }
  if (moe_layer_->parsed()) {
    absl::Status status = bench::RunMoeLayerBench(moe_layer_options_);
    if (!status.ok()) {
      std::fprintf(stderr, "tessera bench moe-layer: %s\n", status.ToString().c_str());
      return 1;
    }
    return 0;
  }
  return 2;
}

}  // namespace tessera::engine
