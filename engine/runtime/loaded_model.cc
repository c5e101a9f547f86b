#include "engine/runtime/loaded_model.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/json_file.h"
#include "common/status_macros.h"
#include "engine/models/model_registry.h"

namespace tessera::engine {

absl::StatusOr<LoadedModel> LoadedModel::Load(const std::string& path, int threads,
                                              ModelOptions options) {
  LoadedModel m;
  const bool directory = IsCheckpointDirectory(path);
  if (directory) {
    TESSERA_ASSIGN_OR_RETURN(m.tokenizer, Tokenizer::FromHuggingFace(path));
  } else {
    TESSERA_ASSIGN_OR_RETURN(m.file, GgufFile::Open(path));
    TESSERA_ASSIGN_OR_RETURN(m.tokenizer, Tokenizer::FromGguf(*m.file));
  }
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  m.pool = std::make_unique<kernels::ThreadPool>(threads);
  options.pool = m.pool.get();
  if (directory) {
    TESSERA_ASSIGN_OR_RETURN(m.model, CreateHfModel(path, options));
  } else {
    TESSERA_ASSIGN_OR_RETURN(m.model, CreateModel(*m.file, options));
  }
  if (m.model->config().vocab_size < m.tokenizer->vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": the tokenizer has ", m.tokenizer->vocab_size(), " tokens but the model only ",
        m.model->config().vocab_size));
  }
  return m;
}

bool IsCheckpointDirectory(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec);
}

absl::StatusOr<ModelFacts> ReadModelFacts(const std::string& path) {
  ModelFacts facts;
  int64_t context = 0;
  std::string where;
  if (IsCheckpointDirectory(path)) {
    TESSERA_ASSIGN_OR_RETURN(facts.tokenizer, Tokenizer::FromHuggingFace(path));
    where = (std::filesystem::path(path) / "config.json").string();
    TESSERA_ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonFile(where));
    if (!config.is_object() || !config.contains("max_position_embeddings") ||
        !config["max_position_embeddings"].is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": no integer max_position_embeddings"));
    }
    context = config["max_position_embeddings"].get<int64_t>();
    where = absl::StrCat(where, ": max_position_embeddings");
  } else {
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
    TESSERA_ASSIGN_OR_RETURN(facts.tokenizer, Tokenizer::FromGguf(*file));
    TESSERA_ASSIGN_OR_RETURN(std::string architecture, file->GetString("general.architecture"));
    TESSERA_ASSIGN_OR_RETURN(context, file->GetInt(architecture + ".context_length"));
    where = absl::StrCat(path, ": ", architecture, ".context_length");
  }
  if (context <= 0 || context > (int64_t{1} << 24)) {
    return absl::InvalidArgumentError(absl::StrCat(where, " is ", context));
  }
  facts.context_length = static_cast<int32_t>(context);
  return facts;
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
