// The tessera binary: one executable, a subcommand per job.
//   tessera generate --prompt TEXT [--chat] ...   stream a completion on this machine
//   tessera serve [--prefill N --decode M]        a whole deployment on this host
//   tessera router | worker                      one serving process each
//   tessera admin workers | drain WORKER         operate a running deployment
//   tessera cache --router ADDR                  a KV cache pool server
//   tessera bench model [...]                    model runtime throughput
#include <cstdio>

#include "CLI/CLI.hpp"
#include "engine/main/bench_command.h"
#include "engine/main/generate_command.h"
#include "engine/main/serve_commands.h"

int main(int argc, char** argv) {
  CLI::App app{"Tessera: an LLM inference serving engine"};
  app.require_subcommand(1);
  tessera::engine::GenerateCommand generate(app);
  tessera::engine::ServeCommand serve(app);
  tessera::engine::RouterCommand router(app);
  tessera::engine::WorkerCommand worker(app);
  tessera::engine::AdminCommand admin(app);
  tessera::engine::CacheCommand cache(app);
  tessera::engine::BenchCommand bench(app);
  CLI11_PARSE(app, argc, argv);
  if (generate.selected()) return generate.Run();
  if (serve.selected()) return serve.Run();
  if (router.selected()) return router.Run();
  if (worker.selected()) return worker.Run();
  if (admin.selected()) return admin.Run();
  if (cache.selected()) return cache.Run();
  if (bench.selected()) return bench.Run();
  return 2;
}
