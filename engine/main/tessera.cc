// The tessera binary: one executable, a subcommand per job.
//   tessera generate --prompt TEXT [--chat] ...   stream a completion on this machine
//   tessera bench model [...]                    model runtime throughput
#include <cstdio>

#include "CLI/CLI.hpp"
#include "engine/main/bench_command.h"
#include "engine/main/generate_command.h"

int main(int argc, char** argv) {
  CLI::App app{"Tessera: an LLM inference serving engine"};
  app.require_subcommand(1);
  tessera::engine::GenerateCommand generate(app);
  tessera::engine::BenchCommand bench(app);
  CLI11_PARSE(app, argc, argv);
  if (generate.selected()) return generate.Run();
  if (bench.selected()) return bench.Run();
  return 2;
}
