// The serving subcommands: `tessera router`, `tessera worker`, `tessera serve` (a whole
// deployment on this host) and `tessera admin`. Flags are parsed and validated here and passed
// down as options structs.
#ifndef TESSERA_ENGINE_MAIN_SERVE_COMMANDS_H_
#define TESSERA_ENGINE_MAIN_SERVE_COMMANDS_H_

#include <string>

#include "CLI/CLI.hpp"
#include "engine/server/cache_server.h"
#include "engine/server/router_process.h"
#include "engine/server/worker_process.h"

namespace tessera::engine {

class RouterCommand {
 public:
  explicit RouterCommand(CLI::App& app);
  bool selected() const { return command_->parsed(); }
  int Run();

 private:
  CLI::App* command_;
  server::RouterOptions options_;
  int heartbeat_timeout_ms_ = 3000;
};

class WorkerCommand {
 public:
  explicit WorkerCommand(CLI::App& app);
  bool selected() const { return command_->parsed(); }
  int Run();

 private:
  CLI::App* command_;
  server::WorkerOptions options_;
  std::string role_ = "both";
  bool no_prefix_caching_ = false;
  std::string preemption_ = "recompute";
  std::string prefill_order_ = "shortest";
  int64_t prefill_max_wait_ms_ = 5000;
  int ep_timeout_ms_ = 30000;
};

class ServeCommand {
 public:
  explicit ServeCommand(CLI::App& app);
  bool selected() const { return command_->parsed(); }
  int Run();

 private:
  CLI::App* command_;
  std::string model_path_;
  std::string grpc_address_ = "127.0.0.1:50051";
  std::string http_address_ = "127.0.0.1:8000";
  int prefill_ = 1;
  int decode_ = 1;
  int both_ = 0;
  int ep_ = 1;
  int cache_ = 0;
  int64_t cache_bytes_ = int64_t{1} << 30;
  int worker_threads_ = 0;
  int max_in_flight_ = 256;
  bool network_kv_ = false;
  std::vector<std::string> worker_flags_;
  std::vector<std::string> router_flags_;
};

class CacheCommand {
 public:
  explicit CacheCommand(CLI::App& app);
  bool selected() const { return command_->parsed(); }
  int Run();

 private:
  CLI::App* command_;
  server::CacheServerOptions options_;
};

class AdminCommand {
 public:
  explicit AdminCommand(CLI::App& app);
  bool selected() const { return command_->parsed(); }
  int Run();

 private:
  CLI::App* command_;
  CLI::App* workers_;
  CLI::App* drain_;
  std::string router_ = "127.0.0.1:50051";
  std::string worker_;
  bool json_ = false;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MAIN_SERVE_COMMANDS_H_
