#include "engine/safetensors/synthetic_weights.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/safetensors/fp8.h"

namespace tessera::engine {
namespace {

uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t Fnv1a64(absl::string_view bytes) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001B3ULL;
  }
  return h;
}

void SyntheticValues(uint64_t seed, const SyntheticTensor& tensor, int64_t first,
                     std::span<float> out) {
  const uint64_t base = Mix(seed ^ Fnv1a64(tensor.name));
  int64_t row_length = 1;
  for (size_t d = 1; d < tensor.shape.size(); ++d) row_length *= tensor.shape[d];
  for (size_t k = 0; k < out.size(); ++k) {
    const uint64_t index = static_cast<uint64_t>(first) + k;
    const uint64_t z = Mix(base + (index + 1) * 0x9E3779B97F4A7C15ULL);
    const double u = static_cast<double>(z >> 40) / 16777216.0;
    double scale = tensor.scale;
    if (!tensor.row_scales.empty()) {
      const size_t row = static_cast<size_t>(index / static_cast<uint64_t>(row_length));
      if (row < tensor.row_scales.size()) scale *= tensor.row_scales[row];
    }
    out[k] = static_cast<float>(tensor.offset + (2.0 * u - 1.0) * scale);
  }
}

namespace {

int64_t Elements(const SyntheticTensor& t) {
  int64_t elements = 1;
  for (int64_t d : t.shape) elements *= d;
  return elements;
}

// A tensor's FP8 codes and block scales, computed in float as PyTorch computes them.
struct Fp8Tensor {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  std::vector<int64_t> scale_shape;
};

absl::StatusOr<Fp8Tensor> QuantizeFp8(uint64_t seed, const SyntheticTensor& t) {
  if (t.shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic tensor ", t.name, ": fp8_block needs a 2-D tensor"));
  }
  const int64_t rows = t.shape[0];
  const int64_t columns = t.shape[1];
  const int64_t b = t.fp8_block;
  std::vector<float> values(static_cast<size_t>(rows * columns));
  SyntheticValues(seed, t, 0, values);
  Fp8Tensor q;
  q.scale_shape = {(rows + b - 1) / b, (columns + b - 1) / b};
  q.scales.assign(static_cast<size_t>(q.scale_shape[0] * q.scale_shape[1]), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < columns; ++c) {
      float& amax = q.scales[(r / b) * q.scale_shape[1] + c / b];
      amax = std::max(amax, std::fabs(values[r * columns + c]));
    }
  }
  for (float& scale : q.scales) scale = scale > 0.0f ? scale / kFp8E4M3Max : 1.0f;
  q.codes.resize(values.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < columns; ++c) {
      const float scale = q.scales[(r / b) * q.scale_shape[1] + c / b];
      q.codes[r * columns + c] = FloatToFp8E4M3(values[r * columns + c] / scale);
    }
  }
  return q;
}

}  // namespace

absl::Status WriteSyntheticSafetensors(const std::string& path, uint64_t seed,
                                       std::span<const SyntheticTensor> tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  std::vector<std::optional<Fp8Tensor>> fp8(tensors.size());
  auto add = [&](const std::string& name, const char* dtype, const std::vector<int64_t>& shape,
                 uint64_t bytes) {
    header[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SyntheticTensor& t = tensors[i];
    const uint64_t elements = static_cast<uint64_t>(Elements(t));
    if (t.fp8_block <= 0) {
      add(t.name, "F32", t.shape, elements * sizeof(float));
      continue;
    }
    absl::StatusOr<Fp8Tensor> q = QuantizeFp8(seed, t);
    if (!q.ok()) return q.status();
    fp8[i] = *std::move(q);
    add(t.name, "F8_E4M3", t.shape, elements);
    add(t.name + "_scale_inv", "F32", fp8[i]->scale_shape, fp8[i]->scales.size() * sizeof(float));
  }
  header["__metadata__"] = {{"generator", "tessera synthetic weights"},
                            {"seed", std::to_string(seed)}};
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // Keeps the data 8-byte aligned.
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));
  out.write(reinterpret_cast<const char*>(length), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  // The data in the order the offsets were given.
  std::vector<float> chunk;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SyntheticTensor& t = tensors[i];
    if (fp8[i].has_value()) {
      out.write(reinterpret_cast<const char*>(fp8[i]->codes.data()),
                static_cast<std::streamsize>(fp8[i]->codes.size()));
      out.write(reinterpret_cast<const char*>(fp8[i]->scales.data()),
                static_cast<std::streamsize>(fp8[i]->scales.size() * sizeof(float)));
      continue;
    }
    const int64_t elements = Elements(t);
    for (int64_t first = 0; first < elements; first += 1 << 16) {
      chunk.resize(static_cast<size_t>(std::min<int64_t>(1 << 16, elements - first)));
      SyntheticValues(seed, t, first, chunk);
      out.write(reinterpret_cast<const char*>(chunk.data()),
                static_cast<std::streamsize>(chunk.size() * sizeof(float)));
    }
  }
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

}  // namespace tessera::engine
