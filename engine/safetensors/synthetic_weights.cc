#include "engine/safetensors/synthetic_weights.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

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

absl::Status WriteSyntheticSafetensors(const std::string& path, uint64_t seed,
                                       std::span<const SyntheticTensor> tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const SyntheticTensor& t : tensors) {
    int64_t elements = 1;
    for (int64_t d : t.shape) elements *= d;
    const uint64_t bytes = static_cast<uint64_t>(elements) * sizeof(float);
    header[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
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
  std::vector<float> chunk;
  for (const SyntheticTensor& t : tensors) {
    int64_t elements = 1;
    for (int64_t d : t.shape) elements *= d;
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
