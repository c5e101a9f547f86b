// Architectures register a factory under their GGUF general.architecture name, or, for Hugging
// Face checkpoint directories, their config.json model_type; one file per architecture
// (engine/models/llama.cc, qwen3_moe.cc, ...). Thread-safe after static initialization.
#ifndef TESSERA_ENGINE_MODELS_MODEL_REGISTRY_H_
#define TESSERA_ENGINE_MODELS_MODEL_REGISTRY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/gguf/gguf_file.h"
#include "engine/models/model.h"

namespace tessera::engine {

using ModelFactory = absl::StatusOr<std::unique_ptr<Model>> (*)(const GgufFile&,
                                                                const ModelOptions&);

// Architectures known to the engine; the list lives in model_registry.cc.
absl::StatusOr<ModelFactory> FindModelFactory(absl::string_view architecture);

// Loads the checkpoint directory's model by its config.json model_type; Unimplemented names a
// type Tessera does not know.
absl::StatusOr<std::unique_ptr<Model>> CreateHfModel(const std::string& directory,
                                                     const ModelOptions& options);

absl::StatusOr<std::unique_ptr<Model>> CreateLlamaModel(const GgufFile& file,
                                                        const ModelOptions& options);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_MODEL_REGISTRY_H_
