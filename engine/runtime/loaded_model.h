// Everything needed to run one model in this process: its files (a GGUF file, or a Hugging Face
// checkpoint directory), its tokenizer, a compute thread pool and the model. Thread-safety: the
// tokenizer is shareable; the pool and model belong to one step loop.
#ifndef TESSERA_ENGINE_RUNTIME_LOADED_MODEL_H_
#define TESSERA_ENGINE_RUNTIME_LOADED_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/gguf/gguf_file.h"
#include "engine/models/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "kernels/thread_pool.h"

namespace tessera::engine {

struct LoadedModel {
  std::unique_ptr<GgufFile> file;  // Null for a checkpoint directory.
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<kernels::ThreadPool> pool;
  std::unique_ptr<Model> model;

  // `path` is a GGUF file or a checkpoint directory (config.json, safetensors,
  // tokenizer.json). `threads` <= 0 means one per core. `options` carries the rest of the
  // model's options (its pool is the one made here).
  static absl::StatusOr<LoadedModel> Load(const std::string& path, int threads,
                                          ModelOptions options = {});
};

// What serving a model needs to know of it besides its weights: the router's view.
struct ModelFacts {
  std::unique_ptr<Tokenizer> tokenizer;
  int32_t context_length = 0;  // Positions the model was trained for.
};

// Reads the tokenizer and context length of the GGUF file or checkpoint directory at `path`,
// without loading the weights. InvalidArgument names the file and field that is wrong.
absl::StatusOr<ModelFacts> ReadModelFacts(const std::string& path);

// Whether `path` is a directory (a Hugging Face checkpoint) rather than a GGUF file.
bool IsCheckpointDirectory(const std::string& path);

// The default model's path: $TESSERA_MODEL if set, else models/SmolLM2-135M-Instruct.Q4_1.gguf
// under the current directory or the source tree the binary was built in.
std::string DefaultModelPath();

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_RUNTIME_LOADED_MODEL_H_
