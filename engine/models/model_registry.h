// Architectures register a factory under their GGUF general.architecture name, one file per
// architecture (engine/models/llama.cc, ...). Thread-safe after static initialization.
#ifndef TESSERA_ENGINE_MODELS_MODEL_REGISTRY_H_
#define TESSERA_ENGINE_MODELS_MODEL_REGISTRY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "engine/gguf/gguf_file.h"
#include "engine/models/model.h"

namespace tessera::engine {

using ModelFactory = absl::StatusOr<std::unique_ptr<Model>> (*)(const GgufFile&,
                                                                const ModelOptions&);

// Architectures known to the engine; the list lives in model_registry.cc.
absl::StatusOr<ModelFactory> FindModelFactory(absl::string_view architecture);

absl::StatusOr<std::unique_ptr<Model>> CreateLlamaModel(const GgufFile& file,
                                                        const ModelOptions& options);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_MODEL_REGISTRY_H_
