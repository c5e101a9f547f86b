// Activations quantized to 8 bits per 32-element block, the right-hand side of the integer
// matmul kernels: x[k] ~= d * q[k], with s = d * sum(q) kept for the weights' offset term.
// d and s carry fp16 precision (held in floats for speed), as in GGUF's Q8_0/Q8_1 blocks, so
// results match other GGUF runtimes closely.
// Matrices packed as bf16 (PackedFormat::kBf16) take the rows rounded to bf16 instead; a
// model with such matrices turns that copy on with set_keep_bf16().
// Not thread-safe: owned by whoever runs the step.
#ifndef TESSERA_KERNELS_QUANTIZED_ACTIVATIONS_H_
#define TESSERA_KERNELS_QUANTIZED_ACTIVATIONS_H_

#include <cstdint>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/tensor_type.h"

namespace tessera::kernels {

struct ActivationBlock {
  float d;
  float s;      // d * sum(q), for weights with an offset m (Q4_0, Q4_1).
  int32_t sum;  // sum(q), exact, for 8-bit weights, whose offset cancels in integers.
  int8_t q[kQuantBlock];
};
static_assert(sizeof(ActivationBlock) == 44);

class QuantizedActivations {
 public:
  // Quantizes `tokens` rows of `cols` floats (cols a multiple of 32), row t at x + t * ld.
  // Reuses its buffer across calls.
  void Quantize(const float* x, int64_t tokens, int64_t cols, int64_t ld, Isa isa = DefaultIsa());

  // For callers that quantize rows in parallel: Reset() sizes the buffer, then each row is
  // written once by QuantizeRow() (distinct rows may be written from different threads).
  void Reset(int64_t tokens, int64_t cols);
  void QuantizeRow(int64_t t, const float* x, Isa isa = DefaultIsa());

  // Whether QuantizeRow() also keeps the row rounded to bf16 (off by default: only models
  // with bf16 matrices pay for it). Takes effect at the next Reset().
  void set_keep_bf16(bool keep) { keep_bf16_ = keep; }
  bool keeps_bf16() const { return keep_bf16_; }

  int64_t tokens() const { return tokens_; }
  int64_t cols() const { return cols_; }
  const ActivationBlock* row(int64_t t) const { return blocks_.data() + t * (cols_ / kQuantBlock); }
  ActivationBlock* mutable_row(int64_t t) { return blocks_.data() + t * (cols_ / kQuantBlock); }
  // Row t rounded to bf16 (cols() values); only when keeps_bf16().
  const uint16_t* bf16_row(int64_t t) const { return bf16_.data() + t * cols_; }

 private:
  int64_t tokens_ = 0;
  int64_t cols_ = 0;
  std::vector<ActivationBlock> blocks_;
  bool keep_bf16_ = false;
  std::vector<uint16_t> bf16_;
};

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_QUANTIZED_ACTIVATIONS_H_
