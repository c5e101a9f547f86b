// `tessera generate`: streams one completion on this machine, then prompt and generation
// throughput. Flags are parsed and validated here and passed down as options structs.
#ifndef TESSERA_ENGINE_MAIN_GENERATE_COMMAND_H_
#define TESSERA_ENGINE_MAIN_GENERATE_COMMAND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "engine/sampling/sampling_params.h"

namespace tessera::engine {

class GenerateCommand {
 public:
  explicit GenerateCommand(CLI::App& app);
  bool selected() const { return command_->parsed(); }
  // Returns the process exit code.
  int Run();

 private:
  CLI::App* command_;
  std::string model_path_;
  std::string prompt_;
  std::string system_;
  bool chat_ = false;
  bool json_ = false;
  int threads_ = 0;
  int ffn_experts_ = 0;
  int block_size_ = 16;
  int64_t seed_ = -1;
  SamplingParams sampling_;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MAIN_GENERATE_COMMAND_H_
