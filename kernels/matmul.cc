#include "kernels/matmul.h"

#include <algorithm>

#include "common/check.h"
#include "kernels/fp16.h"
#include "kernels/internal/kernel_table.h"

namespace tessera::kernels {

void Matmul(const PackedMatrix& w, const QuantizedActivations& x, float* out, int64_t ld_out,
            ThreadPool& pool, Isa isa) {
  TESSERA_CHECK(x.cols() == w.cols());
  TESSERA_CHECK(ld_out >= w.rows());
  TESSERA_CHECK(w.format() != PackedFormat::kBf16 || x.keeps_bf16());
  const internal::KernelTable& kernels = internal::KernelsFor(isa);
  // Two chunks per thread: enough for one thread to take over from another that the host
  // preempted, while each chunk stays one long run of weights that the hardware prefetcher
  // streams. With 16 chunks per thread, every chunk restarted the stream and contended for the
  // cursor; decode at batch 1 went from ~230 to ~310 tokens/s with two (docs/PERFORMANCE.md).
  int64_t grain = std::max<int64_t>(1, w.row_groups() / (2 * pool.num_threads()));
  pool.ParallelFor(w.row_groups(), grain, [&](int64_t begin, int64_t end) {
    kernels.matmul(w, x, begin, end, out, ld_out);
  });
}

void QuantizedActivations::Reset(int64_t tokens, int64_t cols) {
  TESSERA_CHECK(cols % kQuantBlock == 0);
  tokens_ = tokens;
  cols_ = cols;
  blocks_.resize(static_cast<size_t>(tokens * (cols / kQuantBlock)));
  bf16_.resize(keep_bf16_ ? static_cast<size_t>(tokens * cols) : 0);
}

void QuantizedActivations::QuantizeRow(int64_t t, const float* x, Isa isa) {
  TESSERA_DCHECK(t >= 0 && t < tokens_);
  internal::KernelsFor(isa).quantize_row(x, cols_, mutable_row(t));
  if (keep_bf16_) {
    uint16_t* out = bf16_.data() + t * cols_;
    for (int64_t i = 0; i < cols_; ++i) out[i] = Fp32ToBf16(x[i]);
  }
}

void QuantizedActivations::Quantize(const float* x, int64_t tokens, int64_t cols, int64_t ld,
                                    Isa isa) {
  Reset(tokens, cols);
  for (int64_t t = 0; t < tokens; ++t) QuantizeRow(t, x + t * ld, isa);
}

}  // namespace tessera::kernels
