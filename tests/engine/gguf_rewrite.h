// Writes a GGUF v3 image with all of a parsed file's metadata and tensors, letting a callback
// replace any tensor's type and data: for tests that need a variant of a real model file (the
// default model with its matrices unquantized, say) without shipping one.
#ifndef TESSERA_TESTS_ENGINE_GGUF_REWRITE_H_
#define TESSERA_TESTS_ENGINE_GGUF_REWRITE_H_

#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "engine/gguf/gguf_file.h"

namespace tessera::testing {

struct ReplacedTensor {
  kernels::TensorType type;
  std::vector<uint8_t> data;
};

class GgufImageWriter {
 public:
  template <typename T>
  void Put(T v) {
    const size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    std::memcpy(bytes_.data() + at, &v, sizeof(T));
  }
  void PutString(const std::string& s) {
    Put<uint64_t>(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
  }
  void PutScalar(engine::GgufValueType type, int64_t i, double f, bool b) {
    using T = engine::GgufValueType;
    switch (type) {
      case T::kUint8: Put<uint8_t>(static_cast<uint8_t>(i)); break;
      case T::kInt8: Put<int8_t>(static_cast<int8_t>(i)); break;
      case T::kUint16: Put<uint16_t>(static_cast<uint16_t>(i)); break;
      case T::kInt16: Put<int16_t>(static_cast<int16_t>(i)); break;
      case T::kUint32: Put<uint32_t>(static_cast<uint32_t>(i)); break;
      case T::kInt32: Put<int32_t>(static_cast<int32_t>(i)); break;
      case T::kUint64: Put<uint64_t>(static_cast<uint64_t>(i)); break;
      case T::kInt64: Put<int64_t>(i); break;
      case T::kFloat32: Put<float>(static_cast<float>(f)); break;
      case T::kFloat64: Put<double>(f); break;
      case T::kBool: Put<uint8_t>(b ? 1 : 0); break;
      default: break;
    }
  }
  void PutValue(const engine::GgufValue& v) {
    using T = engine::GgufValueType;
    Put<uint32_t>(static_cast<uint32_t>(v.type));
    if (v.type == T::kString) return PutString(std::get<std::string>(v.value));
    if (v.type != T::kArray) {
      const int64_t* i = std::get_if<int64_t>(&v.value);
      const double* f = std::get_if<double>(&v.value);
      const bool* b = std::get_if<bool>(&v.value);
      return PutScalar(v.type, i ? *i : 0, f ? *f : 0, b ? *b : false);
    }
    Put<uint32_t>(static_cast<uint32_t>(v.array_type));
    if (const auto* ints = std::get_if<std::vector<int64_t>>(&v.value)) {
      Put<uint64_t>(ints->size());
      for (int64_t i : *ints) PutScalar(v.array_type, i, 0, false);
    } else if (const auto* floats = std::get_if<std::vector<double>>(&v.value)) {
      Put<uint64_t>(floats->size());
      for (double f : *floats) PutScalar(v.array_type, 0, f, false);
    } else if (const auto* strings = std::get_if<std::vector<std::string>>(&v.value)) {
      Put<uint64_t>(strings->size());
      for (const std::string& s : *strings) PutString(s);
    } else if (const auto* bools = std::get_if<std::vector<bool>>(&v.value)) {
      Put<uint64_t>(bools->size());
      for (bool b : *bools) PutScalar(v.array_type, 0, 0, b);
    }
  }
  void Align(uint64_t alignment) {
    bytes_.resize((bytes_.size() + alignment - 1) / alignment * alignment, 0);
  }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// The image of `file` with each tensor for which `replace` returns a value given that type
// and data instead (the shape stays).
inline std::vector<uint8_t> RewriteGguf(
    const engine::GgufFile& file,
    const std::function<std::optional<ReplacedTensor>(const engine::GgufTensor&)>& replace) {
  std::vector<std::optional<ReplacedTensor>> replaced;
  for (const engine::GgufTensor& t : file.tensors()) replaced.push_back(replace(t));
  GgufImageWriter w;
  w.Put<uint32_t>(0x46554747);  // "GGUF"
  w.Put<uint32_t>(3);
  w.Put<uint64_t>(file.tensors().size());
  w.Put<uint64_t>(file.metadata().size());
  for (const auto& [key, value] : file.metadata()) {
    w.PutString(key);
    w.PutValue(value);
  }
  const uint64_t alignment = file.alignment();
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (size_t i = 0; i < file.tensors().size(); ++i) {
    const engine::GgufTensor& t = file.tensors()[i];
    w.PutString(t.name);
    w.Put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) w.Put<uint64_t>(static_cast<uint64_t>(d));
    w.Put<uint32_t>(static_cast<uint32_t>(replaced[i] ? replaced[i]->type : t.type));
    w.Put<uint64_t>(offset);
    offsets.push_back(offset);
    const uint64_t size = replaced[i] ? replaced[i]->data.size() : t.data.size();
    offset = (offset + size + alignment - 1) / alignment * alignment;
  }
  w.Align(alignment);
  const size_t data_start = w.bytes().size();
  w.bytes().resize(data_start + offset, 0);
  for (size_t i = 0; i < file.tensors().size(); ++i) {
    const engine::GgufTensor& t = file.tensors()[i];
    const uint8_t* src = replaced[i] ? replaced[i]->data.data() : t.data.data();
    const size_t size = replaced[i] ? replaced[i]->data.size() : t.data.size();
    std::memcpy(w.bytes().data() + data_start + offsets[i], src, size);
  }
  return std::move(w.bytes());
}

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_ENGINE_GGUF_REWRITE_H_
