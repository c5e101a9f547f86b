// Everything needed to run one GGUF model in this process: the mapped file, its tokenizer, a
// compute thread pool and the model. Thread-safety: the tokenizer is shareable; the pool and
// model belong to one step loop.
#ifndef TESSERA_ENGINE_RUNTIME_LOADED_MODEL_H_
#define TESSERA_ENGINE_RUNTIME_LOADED_MODEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/gguf/gguf_file.h"
#include "engine/models/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "kernels/thread_pool.h"

namespace tessera::engine {

struct LoadedModel {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<kernels::ThreadPool> pool;
  std::unique_ptr<Model> model;

  // `threads` <= 0 means one per core. `options` carries the rest of the model's options (its
  // pool is the one made here).
  static absl::StatusOr<LoadedModel> Load(const std::string& path, int threads,
                                          ModelOptions options = {});
};

// The default model's path: $TESSERA_MODEL if set, else models/SmolLM2-135M-Instruct.Q4_1.gguf
// under the current directory or the source tree the binary was built in.
std::string DefaultModelPath();

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_RUNTIME_LOADED_MODEL_H_
