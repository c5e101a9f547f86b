// Reads a JSON document from a file, with errors that name the file (and, for malformed JSON,
// the byte offset). Thread-safe (stateless).
#ifndef TESSERA_COMMON_JSON_FILE_H_
#define TESSERA_COMMON_JSON_FILE_H_

#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"

namespace tessera {

// NotFound when the file cannot be opened, InvalidArgument when it is not JSON.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);

}  // namespace tessera

#endif  // TESSERA_COMMON_JSON_FILE_H_
