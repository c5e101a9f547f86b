// Quantized weight matrices repacked, once at load, into the layout the matmul kernels
// stream. Weights stay quantized: every supported quantized type becomes
//     w[r][k] = d[r][b] * q[r][k] + m[r][b]     (b = k / 32, q unsigned)
// with fp16 d and m per row and 32-column block, as in Q4_1. Q4_0 maps to m = -8d and Q8_0 to
// q + 128 with m = -128d (which the kernels apply exactly, in integers), so one kernel family
// serves all three without changing a value.
// Rows are grouped 16 at a time: for each group and block, a tile holds the 16 d's, the 16
// m's, then the quants interleaved four at a time across the 16 rows, so that one 64-byte
// load feeds a 16-lane integer dot product (VPDPBUSD) with one broadcast group of four
// activations. Nibble tiles keep Q4_1's own nibble pairing (element j low, j + 16 high).
// Unquantized weights (F32, F16, BF16) are rounded to bf16 instead, for the floating-point
// kernels (VDPBF16PS where the CPU has AVX512_BF16): a bf16 tile is 16 vectors of 64 bytes,
// vector p holding elements 2p and 2p + 1 of each of the 16 rows, so one load feeds a 16-lane
// pairwise dot product with one broadcast pair of activations.
// Thread-safe after construction (immutable).
#ifndef TESSERA_KERNELS_PACKED_MATRIX_H_
#define TESSERA_KERNELS_PACKED_MATRIX_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/huge_page_arena.h"
#include "kernels/tensor_type.h"

namespace tessera::kernels {

inline constexpr int kRowGroup = 16;

enum class PackedFormat {
  kNibble,  // 4-bit quants (from Q4_0, Q4_1).
  kByte,    // 8-bit quants (from Q8_0).
  kBf16,    // bf16 values (from F32, F16, BF16), no d or m.
};

// One source tensor of a packed matrix: `rows` rows of `cols` elements of `type`, row-major,
// in GGUF's block layout.
struct WeightSource {
  TensorType type;
  std::span<const uint8_t> data;
  int64_t rows = 0;
};

class PackedMatrix {
 public:
  // Packs one or more tensors with the same number of columns on top of each other (e.g. the
  // Q, K and V projections into one matrix). All sources must share a packed format; each
  // must hold exactly rows * cols elements. InvalidArgument says which source is wrong.
  static absl::StatusOr<PackedMatrix> Pack(std::span<const WeightSource> sources, int64_t cols);
  static bool CanPack(TensorType type);
  static absl::StatusOr<PackedFormat> FormatOf(TensorType type);

  PackedMatrix() = default;  // Empty: no rows.
  PackedMatrix(PackedMatrix&&) = default;
  PackedMatrix& operator=(PackedMatrix&&) = default;

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t row_groups() const { return (rows_ + kRowGroup - 1) / kRowGroup; }
  int64_t blocks_per_row() const { return cols_ / kQuantBlock; }
  PackedFormat format() const { return format_; }
  int64_t tile_bytes() const { return TileBytes(format_); }
  int64_t size_bytes() const { return static_cast<int64_t>(storage_size_); }

  // The tile of row group `group`, column block `block`: 16 fp16 d, 16 fp16 m, then quants.
  const uint8_t* tile(int64_t group, int64_t block) const {
    return storage_.get() + (group * blocks_per_row() + block) * tile_bytes();
  }

  // Writes row `row` as floats (used by tests and as the reference).
  void DequantizeRow(int64_t row, float* out) const;

  static int64_t TileBytes(PackedFormat format) {
    switch (format) {
      case PackedFormat::kNibble:
        return 4 * kRowGroup + kRowGroup * 16;
      case PackedFormat::kByte:
        return 4 * kRowGroup + kRowGroup * 32;
      case PackedFormat::kBf16:
        break;
    }
    return kRowGroup * kQuantBlock * 2;
  }

 private:
  int64_t rows_ = 0;
  int64_t cols_ = 0;
  PackedFormat format_ = PackedFormat::kNibble;
  HugePageBlock storage_;  // Streamed every step: huge pages spare the TLB.
  size_t storage_size_ = 0;
};

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_PACKED_MATRIX_H_
