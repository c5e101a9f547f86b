#include "kernels/packed_matrix.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "kernels/dequantize.h"
#include "kernels/fp16.h"

namespace tessera::kernels {
namespace {

// d, m and unsigned quants of one 32-element block, in the packed form.
struct UnpackedBlock {
  uint16_t d;
  uint16_t m;
  uint8_t q[kQuantBlock];  // Nibble formats use 0..15.
};

UnpackedBlock ReadBlock(TensorType type, const uint8_t* src) {
  UnpackedBlock out;
  switch (type) {
    case TensorType::kQ4_0: {
      BlockQ4_0 b;
      std::memcpy(&b, src, sizeof(b));
      out.d = b.d;
      out.m = Fp32ToFp16(-8.0f * Fp16ToFp32(b.d));
      for (int j = 0; j < 16; ++j) {
        out.q[j] = b.qs[j] & 0x0f;
        out.q[j + 16] = b.qs[j] >> 4;
      }
      break;
    }
    case TensorType::kQ4_1: {
      BlockQ4_1 b;
      std::memcpy(&b, src, sizeof(b));
      out.d = b.d;
      out.m = b.m;
      for (int j = 0; j < 16; ++j) {
        out.q[j] = b.qs[j] & 0x0f;
        out.q[j + 16] = b.qs[j] >> 4;
      }
      break;
    }
    case TensorType::kQ8_0: {
      BlockQ8_0 b;
      std::memcpy(&b, src, sizeof(b));
      out.d = b.d;
      out.m = Fp32ToFp16(-128.0f * Fp16ToFp32(b.d));
      for (int j = 0; j < 32; ++j) out.q[j] = static_cast<uint8_t>(b.qs[j] + 128);
      break;
    }
    default:
      TESSERA_CHECK(false);
  }
  return out;
}

}  // namespace


bool PackedMatrix::CanPack(TensorType type) { return FormatOf(type).ok(); }

absl::StatusOr<PackedFormat> PackedMatrix::FormatOf(TensorType type) {
  switch (type) {
    case TensorType::kQ4_0:
    case TensorType::kQ4_1:
      return PackedFormat::kNibble;
    case TensorType::kQ8_0:
      return PackedFormat::kByte;
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16:
      return PackedFormat::kBf16;
    default:
      return absl::InvalidArgumentError(absl::StrCat("weights of type ",
                                                     GetTensorTypeInfo(type).name,
                                                     " cannot be packed for the matmul kernels"));
  }
}

absl::StatusOr<PackedMatrix> PackedMatrix::Pack(std::span<const WeightSource> sources,
                                                int64_t cols) {
  if (sources.empty()) return absl::InvalidArgumentError("no weights to pack");
  if (cols <= 0 || cols % kQuantBlock != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot pack ", cols, " columns: not a positive multiple of ", kQuantBlock));
  }
  PackedMatrix m;
  m.cols_ = cols;
  for (size_t i = 0; i < sources.size(); ++i) {
    const WeightSource& s = sources[i];
    absl::StatusOr<PackedFormat> format = FormatOf(s.type);
    if (!format.ok()) return format.status();
    if (i == 0) m.format_ = *format;
    if (*format != m.format_) {
      return absl::InvalidArgumentError(absl::StrCat("weight source ", i, " has type ",
                                                     GetTensorTypeInfo(s.type).name,
                                                     ", which packs differently from source 0"));
    }
    TensorTypeInfo info = GetTensorTypeInfo(s.type);
    int64_t want = s.rows * (cols / info.block_elements) * info.block_bytes;
    if (s.rows <= 0 || static_cast<int64_t>(s.data.size()) != want) {
      return absl::InvalidArgumentError(absl::StrCat("weight source ", i, " holds ", s.data.size(),
                                                     " bytes; ", s.rows, " rows of ", cols, " ",
                                                     info.name, " elements need ", want));
    }
    m.rows_ += s.rows;
  }
  const int64_t blocks = m.blocks_per_row();
  const int64_t tile = m.tile_bytes();
  m.storage_size_ = static_cast<size_t>(m.row_groups() * blocks * tile);
  size_t alloc = (m.storage_size_ + 63) / 64 * 64;
  m.storage_ = AllocateHugePageBlock(alloc);  // Zero-filled, so padding rows yield 0.
  if (m.storage_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", alloc, " bytes of weights"));
  }

  int64_t row = 0;
  std::vector<float> values(m.format_ == PackedFormat::kBf16 ? cols : 0);
  for (const WeightSource& s : sources) {
    TensorTypeInfo info = GetTensorTypeInfo(s.type);
    const int64_t row_bytes = cols / info.block_elements * info.block_bytes;
    for (int64_t r = 0; r < s.rows; ++r, ++row) {
      int64_t group = row / kRowGroup;
      int lane = static_cast<int>(row % kRowGroup);
      const uint8_t* src_row = s.data.data() + r * row_bytes;
      if (m.format_ == PackedFormat::kBf16) {
        kernels::DequantizeRow(s.type, src_row, cols, values.data());
        for (int64_t b = 0; b < blocks; ++b) {
          uint8_t* t = m.storage_.get() + (group * blocks + b) * tile;
          for (int k = 0; k < kQuantBlock; ++k) {
            const uint16_t v = Fp32ToBf16(values[b * kQuantBlock + k]);
            std::memcpy(t + (k / 2) * 64 + lane * 4 + (k % 2) * 2, &v, 2);
          }
        }
        continue;
      }
      for (int64_t b = 0; b < blocks; ++b) {
        UnpackedBlock u = ReadBlock(s.type, src_row + b * info.block_bytes);
        uint8_t* t = m.storage_.get() + (group * blocks + b) * tile;
        std::memcpy(t + 2 * lane, &u.d, 2);
        std::memcpy(t + 2 * kRowGroup + 2 * lane, &u.m, 2);
        uint8_t* quants = t + 4 * kRowGroup;
        if (m.format_ == PackedFormat::kNibble) {
          // Chunk c, lane, byte j holds element 4c + j (low nibble) and 4c + j + 16 (high).
          for (int c = 0; c < 4; ++c) {
            for (int j = 0; j < 4; ++j) {
              quants[c * 64 + lane * 4 + j] =
                  static_cast<uint8_t>(u.q[4 * c + j] | (u.q[4 * c + j + 16] << 4));
            }
          }
        } else {
          for (int c = 0; c < 8; ++c) {
            for (int j = 0; j < 4; ++j) quants[c * 64 + lane * 4 + j] = u.q[4 * c + j];
          }
        }
      }
    }
  }
  return m;
}

void PackedMatrix::DequantizeRow(int64_t row, float* out) const {
  TESSERA_CHECK(row >= 0 && row < rows_);
  int64_t group = row / kRowGroup;
  int lane = static_cast<int>(row % kRowGroup);
  for (int64_t b = 0; b < blocks_per_row(); ++b) {
    const uint8_t* t = tile(group, b);
    if (format_ == PackedFormat::kBf16) {
      for (int k = 0; k < kQuantBlock; ++k) {
        uint16_t v;
        std::memcpy(&v, t + (k / 2) * 64 + lane * 4 + (k % 2) * 2, 2);
        out[b * kQuantBlock + k] = Bf16ToFp32(v);
      }
      continue;
    }
    uint16_t d16, m16;
    std::memcpy(&d16, t + 2 * lane, 2);
    std::memcpy(&m16, t + 2 * kRowGroup + 2 * lane, 2);
    float d = Fp16ToFp32(d16), m = Fp16ToFp32(m16);
    const uint8_t* quants = t + 4 * kRowGroup;
    for (int k = 0; k < kQuantBlock; ++k) {
      int q;
      if (format_ == PackedFormat::kNibble) {
        int c = (k % 16) / 4, j = k % 4;
        uint8_t byte = quants[c * 64 + lane * 4 + j];
        q = k < 16 ? (byte & 0x0f) : (byte >> 4);
      } else {
        q = quants[(k / 4) * 64 + lane * 4 + k % 4];
      }
      // Byte tiles hold q + 128 and ignore m (which is -128 d).
      out[b * kQuantBlock + k] = format_ == PackedFormat::kNibble ? d * static_cast<float>(q) + m
                                                                  : d * static_cast<float>(q - 128);
    }
  }
}

}  // namespace tessera::kernels
