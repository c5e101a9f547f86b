#include "engine/main/bench_command.h"

#include <cstdio>
#include <optional>
#include <thread>

#include "bench/instant_http_server.h"
#include "engine/main/command_status.h"
#include "bench/instant_server.h"
#include "engine/runtime/loaded_model.h"
#include "engine/server/shutdown_signal.h"

namespace tessera::engine {

BenchCommand::BenchCommand(CLI::App& app) {
  command_ = app.add_subcommand("bench", "Benchmarks");
  command_->require_subcommand(1);
  model_ = command_->add_subcommand(
      "model",
      "Prefill and batched-decode throughput of the model runtime (compare with llama-bench)");
  model_options_.model_path = DefaultModelPath();
  model_->add_option("--model", model_options_.model_path,
                     "GGUF model file or Hugging Face checkpoint directory")
      ->check(CLI::ExistingPath);
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

  replay_ = command_->add_subcommand(
      "replay",
      "Replay a trace open loop against a server and report latency, throughput and SLO goodput");
  replay_
      ->add_option("--trace", replay_options_.trace_path,
                   "BurstGPT or Azure CSV, or Mooncake JSON lines")
      ->required()
      ->check(CLI::ExistingFile);
  replay_->add_option("--format", replay_format_, "burstgpt, azure or mooncake (default: detect)");
  replay_->add_option("--target", replay_options_.replay.target, "grpc://HOST:PORT")->required();
  replay_->add_option("--out", replay_options_.out_dir, "Directory for the outputs")->required();
  replay_options_.tokenizer_model = DefaultModelPath();
  replay_
      ->add_option("--model", replay_options_.tokenizer_model,
                   "GGUF file or checkpoint directory whose tokenizer and context the prompts "
                   "are made for")
      ->check(CLI::ExistingPath);
  replay_->add_option("--served-model", replay_options_.replay.model,
                      "Model name to send with each request");
  replay_->add_option("--slo-ttft", slo_ttft_ms_, "TTFT SLO in ms (0: none)")
      ->check(CLI::Range(0.0, 1e9));
  replay_->add_option("--slo-tpot", slo_tpot_ms_, "TPOT SLO in ms (0: none)")
      ->check(CLI::Range(0.0, 1e9));
  replay_
      ->add_option("--time-scale", replay_options_.replay.time_scale,
                   "Divide arrival times by this (2: twice as fast)")
      ->check(CLI::Range(1e-6, 1e6));
  replay_
      ->add_option("--max-requests", replay_options_.replay.max_requests,
                   "Replay at most this many requests (0: all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  replay_
      ->add_option("--duration", replay_options_.replay.duration_s,
                   "Replay only requests due within this many seconds (0: all)")
      ->check(CLI::Range(0.0, 1e9));
  replay_
      ->add_option("--length-scale", replay_options_.replay.length_scale,
                   "Multiply request and response lengths by this")
      ->check(CLI::Range(1e-6, 1e6));
  replay_
      ->add_option("--context", replay_options_.replay.context,
                   "Clip lengths to this many tokens (0: the model's context)")
      ->check(CLI::Range(0, 1 << 24));
  replay_
      ->add_option("--connections", replay_options_.replay.connections,
                   "Connections to spread requests over")
      ->check(CLI::Range(1, 1024));
  replay_
      ->add_option("--request-timeout", replay_options_.replay.request_timeout_s,
                   "Seconds before a request is abandoned")
      ->check(CLI::Range(0.001, 1e6));
  replay_->add_flag("--no-progress", no_progress_, "No live progress line");
  replay_
      ->add_option("--rates", replay_options_.rates,
                   "Sweep: replay once per offered rate (requests/s), arrival times scaled to it")
      ->delimiter(',')
      ->check(CLI::Range(1e-6, 1e6));
  replay_->add_option("--label", replay_options_.label, "The runs' name in the report");
  replay_->add_option("--prompt-salt", replay_options_.replay.prompt_salt,
                      "Vary the prompts' text (same lengths and sharing), e.g. to replay "
                      "again without hitting the server's prefix cache");

  report_ = command_->add_subcommand(
      "report", "Put replays side by side in one HTML report (latency CDFs, throughput, goodput)");
  report_->add_option("--run", report_options_.runs, "LABEL=DIR of a replay's output, or of a --rates sweep (repeatable)")
      ->required();
  report_->add_option("--out", report_options_.out, "HTML file to write")->required();
  report_->add_option("--title", report_options_.title, "The report's title");

  instant_ = command_->add_subcommand(
      "instant-server",
      "A server that answers at once (gRPC Inference, and optionally OpenAI HTTP), to measure "
      "the replayer itself");
  instant_->add_option("--listen", instant_listen_, "gRPC listen address");
  instant_->add_option("--http", instant_http_listen_,
                       "Also serve OpenAI /v1/completions on this IPv4 HOST:PORT");
  instant_
      ->add_option("--hold-ms", instant_hold_ms_,
                   "Keep each stream open this long before its last token")
      ->check(CLI::Range(0, 3600000));

  synth_ = command_->add_subcommand(
      "synth",
      "Write a BurstGPT-style synthetic trace: Gamma arrivals, lengths from a trace or Zipf");
  synth_->add_option("--out", synth_out_, "BurstGPT CSV to write")->required();
  synth_->add_option("--rate", synth_options_.rate, "Requests per second")
      ->check(CLI::Range(1e-6, 1e6));
  synth_
      ->add_option("--burstiness", synth_options_.burstiness,
                   "Coefficient of variation of the gaps between requests (1: Poisson)")
      ->check(CLI::Range(1e-3, 1e3));
  synth_->add_option("--requests", synth_options_.requests, "Requests to write")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  synth_
      ->add_option("--lengths-from", synth_lengths_from_,
                   "Draw (request, response) lengths from this trace's rows (BurstGPT, Azure "
                   "or Mooncake); without it, from Zipf laws")
      ->check(CLI::ExistingFile);
  synth_->add_option("--zipf-exponent", synth_options_.zipf.exponent, "Zipf exponent")
      ->check(CLI::Range(0.01, 10.0));
  synth_->add_option("--max-input", synth_options_.zipf.max_input, "Zipf: longest request")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  synth_->add_option("--max-output", synth_options_.zipf.max_output, "Zipf: longest response")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  synth_->add_option("--seed", synth_options_.seed, "Random seed");
  synth_->add_option("--model", synth_options_.model, "The Model column's value");

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

int BenchCommand::RunSynth() {
  std::optional<bench::Trace> source;
  if (!synth_lengths_from_.empty()) {
    absl::StatusOr<bench::Trace> read = bench::ReadTrace(synth_lengths_from_);
    if (!read.ok()) {
      std::fprintf(stderr, "tessera bench synth: %s\n", read.status().ToString().c_str());
      return 2;
    }
    source = *std::move(read);
    synth_options_.empirical = &*source;
    std::printf("lengths from %s (%s): %zu requests", synth_lengths_from_.c_str(),
                std::string(bench::TraceFormatName(source->format)).c_str(),
                source->requests.size());
    for (const auto& [reason, count] : source->dropped) {
      std::printf("; dropped %lld (%s)", static_cast<long long>(count), reason.c_str());
    }
    std::printf("\n");
  }
  absl::StatusOr<bench::Trace> trace = bench::SynthesizeTrace(synth_options_);
  absl::Status status = trace.ok() ? bench::WriteBurstGptCsv(*trace, synth_out_) : trace.status();
  if (!status.ok()) return Fail("bench synth", status);
  const double span = trace->requests.back().arrival_s;
  std::printf("wrote %s: %lld requests over %.1f s (%.2f requests/s)\n", synth_out_.c_str(),
              static_cast<long long>(trace->requests.size()), span,
              span > 0 ? (trace->requests.size() - 1) / span : 0.0);
  return 0;
}

int BenchCommand::RunReplayCommand() {
  if (!replay_format_.empty()) {
    absl::StatusOr<bench::TraceFormat> format = bench::ParseTraceFormat(replay_format_);
    if (!format.ok()) {
      std::fprintf(stderr, "tessera bench replay: --format: %s\n",
                   std::string(format.status().message()).c_str());
      return 2;
    }
    replay_options_.format = *format;
  }
  replay_options_.slo = {.ttft_s = slo_ttft_ms_ / 1e3, .tpot_s = slo_tpot_ms_ / 1e3};
  replay_options_.progress = !no_progress_;
  absl::Status status = bench::RunReplayCommand(replay_options_);
  return status.ok() ? 0 : Fail("bench replay", status);
}

int BenchCommand::Run() {
  if (replay_->parsed()) return RunReplayCommand();
  if (instant_->parsed()) {
    absl::StatusOr<std::unique_ptr<bench::InstantServer>> server =
        bench::InstantServer::Start(instant_listen_, std::chrono::milliseconds(instant_hold_ms_));
    if (!server.ok()) return Fail("bench instant-server", server.status());
    std::unique_ptr<bench::InstantHttpServer> http;
    if (!instant_http_listen_.empty()) {
      absl::StatusOr<std::unique_ptr<bench::InstantHttpServer>> started =
          bench::InstantHttpServer::Start(instant_http_listen_,
                                          std::chrono::milliseconds(instant_hold_ms_));
      if (!started.ok()) return Fail("bench instant-server", started.status());
      http = *std::move(started);
      std::printf("instant server: gRPC on port %d, HTTP on port %d; Ctrl-C to stop\n",
                  (*server)->port(), http->port());
    } else {
      std::printf("instant server on port %d; Ctrl-C to stop\n", (*server)->port());
    }
    std::fflush(stdout);
    server::InstallShutdownSignalHandlers();
    int64_t last = -1;
    while (!server::ShutdownRequested()) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      const int64_t requests = (*server)->requests() + (http ? http->requests() : 0);
      if (requests != last) {
        last = requests;
        const int64_t open = (*server)->open_streams() + (http ? http->open_streams() : 0);
        const int64_t most =
            std::max((*server)->most_open_streams(), http ? http->most_open_streams() : 0);
        std::printf("%lld requests, %lld streams open (most %lld)\n",
                    static_cast<long long>(last), static_cast<long long>(open),
                    static_cast<long long>(most));
        std::fflush(stdout);
      }
    }
    return 0;
  }
  if (report_->parsed()) {
    absl::Status status = bench::RunReportCommand(report_options_);
    return status.ok() ? 0 : Fail("bench report", status);
  }
  if (synth_->parsed()) return RunSynth();
  if (model_->parsed()) {
    absl::Status status = bench::RunModelBench(model_options_);
    return status.ok() ? 0 : Fail("bench model", status);
  }
  if (kv_transfer_->parsed()) {
    absl::Status status = bench::RunKvTransferBench(kv_transfer_options_);
    return status.ok() ? 0 : Fail("bench kv-transfer", status);
  }
  if (moe_dispatch_->parsed()) {
    absl::Status status = bench::RunMoeDispatchBench(moe_dispatch_options_);
    return status.ok() ? 0 : Fail("bench moe-dispatch", status);
  }
  if (moe_layer_->parsed()) {
    absl::Status status = bench::RunMoeLayerBench(moe_layer_options_);
    return status.ok() ? 0 : Fail("bench moe-layer", status);
  }
  return 2;
}

}  // namespace tessera::engine
