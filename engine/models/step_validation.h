// The checks every model makes of a step's batch before computing it: token ids inside the
// vocabulary, positions inside the context, block tables that cover the positions and name
// existing blocks, a KV cache of the model's shape, and room for the logits wanted.
// InvalidArgument names the sequence and what is wrong.
#ifndef TESSERA_ENGINE_MODELS_STEP_VALIDATION_H_
#define TESSERA_ENGINE_MODELS_STEP_VALIDATION_H_

#include <span>

#include "absl/status/status.h"
#include "engine/models/model.h"

namespace tessera::engine {

absl::Status ValidateStep(const ModelConfig& config, std::span<const SequenceStep> batch,
                          const kvcache::PagedKvCache& cache, std::span<float> logits);

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_STEP_VALIDATION_H_
