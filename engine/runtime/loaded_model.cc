#include "engine/runtime/loaded_model.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "common/status_macros.h"

namespace tessera::engine {

absl::StatusOr<LoadedModel> LoadedModel::Load(const std::string& path, int threads,
                                              ModelOptions options) {
  LoadedModel m;
  TESSERA_ASSIGN_OR_RETURN(m.file, GgufFile::Open(path));
  TESSERA_ASSIGN_OR_RETURN(m.tokenizer, Tokenizer::FromGguf(*m.file));
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  m.pool = std::make_unique<kernels::ThreadPool>(threads);
  options.pool = m.pool.get();
  TESSERA_ASSIGN_OR_RETURN(m.model, CreateModel(*m.file, options));
  return m;
}

std::string DefaultModelPath() {
  const char* env = std::getenv("TESSERA_MODEL");
  if (env != nullptr && *env != '\0') return env;
  const std::filesystem::path relative = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::error_code ec;
  if (std::filesystem::exists(relative, ec)) return relative.string();
#ifdef TESSERA_SOURCE_DIR
  std::filesystem::path in_source = std::filesystem::path(TESSERA_SOURCE_DIR) / relative;
  if (std::filesystem::exists(in_source, ec)) return in_source.string();
#endif
  return relative.string();
}

}  // namespace tessera::engine
