// How a `tessera` subcommand reports a failure: the status on stderr after the command's
// name, and the exit code (2 for bad input, 1 for anything else).
#ifndef TESSERA_ENGINE_MAIN_COMMAND_STATUS_H_
#define TESSERA_ENGINE_MAIN_COMMAND_STATUS_H_

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tessera::engine {

inline int Fail(absl::string_view command, const absl::Status& status) {
  std::fprintf(stderr, "tessera %s: %s\n", std::string(command).c_str(), status.ToString().c_str());
  return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MAIN_COMMAND_STATUS_H_
