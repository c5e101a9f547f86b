#include "common/json_file.h"

#include <fstream>

#include "absl/strings/str_cat.h"

namespace tessera {

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": malformed JSON at byte offset ", e.byte, ": ", e.what()));
  }
}

}  // namespace tessera
