#include "engine/models/step_validation.h"

#include "absl/strings/str_cat.h"

namespace tessera::engine {

absl::Status ValidateStep(const ModelConfig& config, std::span<const SequenceStep> batch,
                          const kvcache::PagedKvCache& cache, std::span<float> logits) {
  const kvcache::KvCacheShape& shape = cache.shape();
  if (shape.num_layers != config.num_layers || shape.num_kv_heads != config.num_kv_heads ||
      shape.head_dim != config.head_dim) {
    return absl::InvalidArgumentError("KV cache shape does not match the model");
  }
  int64_t wanted = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceStep& seq = batch[s];
    if (seq.tokens.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s, " has no tokens"));
    }
    const int64_t end = int64_t{seq.start_pos} + static_cast<int64_t>(seq.tokens.size());
    if (seq.start_pos < 0 || end > config.context_length) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", s, " spans positions [", seq.start_pos, ", ", end,
                       "), outside the context of ", config.context_length));
    }
    if (static_cast<int64_t>(seq.block_table.size()) * shape.block_size < end) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", s, " has ", seq.block_table.size(), " KV blocks, too few for ",
                       end, " positions"));
    }
    for (kvcache::BlockId b : seq.block_table) {
      if (b < 0 || b >= shape.num_blocks) {
        return absl::InvalidArgumentError(
            absl::StrCat("sequence ", s, " names KV block ", b, " of ", shape.num_blocks));
      }
    }
    for (size_t i = 0; i < seq.tokens.size(); ++i) {
      if (seq.tokens[i] < 0 || seq.tokens[i] >= config.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("sequence ", s, " token ", i, " has id ", seq.tokens[i],
                         ", outside the vocabulary of ", config.vocab_size));
      }
    }
    if (seq.want_logits) ++wanted;
  }
  if (static_cast<int64_t>(logits.size()) < wanted * config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("logits buffer holds ", logits.size(),
                                                   " floats, need ", wanted * config.vocab_size));
  }
  return absl::OkStatus();
}

}  // namespace tessera::engine
