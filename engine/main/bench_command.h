// `tessera bench ...`: the benchmark subcommands. Flags are parsed here and passed down.
#ifndef TESSERA_ENGINE_MAIN_BENCH_COMMAND_H_
#define TESSERA_ENGINE_MAIN_BENCH_COMMAND_H_

#include "CLI/CLI.hpp"
#include "bench/kv_transfer_bench.h"
#include "bench/model_bench.h"
#include "bench/moe_dispatch_bench.h"
#include "bench/moe_layer_bench.h"
#include "bench/replay_main.h"
#include "bench/trace_synth.h"

namespace tessera::engine {

class BenchCommand {
 public:
  explicit BenchCommand(CLI::App& app);
  bool selected() const { return command_->parsed(); }
  int Run();

 private:
  int RunSynth();
  int RunReplayCommand();

  CLI::App* command_;
  CLI::App* model_;
  bench::ModelBenchOptions model_options_;
  CLI::App* kv_transfer_;
  bench::KvTransferBenchOptions kv_transfer_options_;
  CLI::App* moe_dispatch_;
  bench::MoeDispatchBenchOptions moe_dispatch_options_;
  CLI::App* moe_layer_;
  bench::MoeLayerBenchOptions moe_layer_options_;
  CLI::App* synth_;
  bench::SynthOptions synth_options_;
  std::string synth_lengths_from_;
  std::string synth_out_;
  CLI::App* replay_;
  bench::ReplayCommandOptions replay_options_;
  std::string replay_format_;
  double slo_ttft_ms_ = 0, slo_tpot_ms_ = 0;
  bool no_progress_ = false;
  CLI::App* report_;
  CLI::App* instant_;
  std::string instant_listen_ = "127.0.0.1:50090";
  std::string instant_http_listen_;
  int instant_hold_ms_ = 0;
  bench::ReportCommandOptions report_options_;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MAIN_BENCH_COMMAND_H_
