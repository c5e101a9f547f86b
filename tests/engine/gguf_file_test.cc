// Tests of the GGUF loader: a well-formed file built byte by byte parses into the right
// metadata and tensors; every kind of corrupt or hostile file is rejected with an error that
// names the field and its byte offset; truncations and random mutations never crash (this
// binary also runs under AddressSanitizer and UBSan); the default model opens.
#include "engine/gguf/gguf_file.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/test_paths.h"

namespace tessera::engine {
namespace {

using Catch::Matchers::Contains;
using kernels::TensorType;

// GGUF value type ids, written raw so that tests can also write invalid ones.
constexpr uint32_t kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
                   kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12;
// GGUF tensor type ids.
constexpr uint32_t kTensorF32 = 0, kTensorF16 = 1, kTensorQ4_0 = 2, kTensorQ4_1 = 3,
                   kTensorQ8_0 = 8, kTensorBF16 = 30;
constexpr uint64_t kHeaderBytes = 24;  // Magic, version, tensor count, metadata count.

// Little-endian byte sink.
class ByteSink {
 public:
  template <typename T>
  ByteSink& Put(T value) {
    uint8_t raw[sizeof(T)];
    std::memcpy(raw, &value, sizeof(T));
    bytes_.insert(bytes_.end(), raw, raw + sizeof(T));
    return *this;
  }
  ByteSink& PutString(const std::string& s) {
    Put<uint64_t>(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    return *this;
  }
  ByteSink& PutBytes(const std::vector<uint8_t>& b) {
    bytes_.insert(bytes_.end(), b.begin(), b.end());
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  uint64_t size() const { return bytes_.size(); }

 private:
  std::vector<uint8_t> bytes_;
};

// Bytes of a tensor's data for a GGUF tensor type and its element count.
uint64_t TensorBytes(uint32_t raw_type, uint64_t elements) {
  switch (raw_type) {
    case kTensorF32:
      return elements * 4;
    case kTensorF16:
    case kTensorBF16:
      return elements * 2;
    case kTensorQ4_0:
      return elements / 32 * 18;
    case kTensorQ4_1:
      return elements / 32 * 20;
    case kTensorQ8_0:
      return elements / 32 * 34;
    default:
      return elements;  // Unsupported types: any size will do.
  }
}

// Writes GGUF files for tests. Metadata entries are serialized as they are added; each Add
// returns the byte offset, in the finished file, where the entry starts. Tensors get data
// offsets laid out in order at `alignment` unless given explicitly, and deterministic contents.
// The file ends right after the last tensor's data (no trailing padding), so that any
// truncation of it is an error.
class GgufTestWriter {
 public:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
    std::optional<uint64_t> offset;  // Relative to the data section; laid out when absent.
    std::vector<uint8_t> data;
  };

  uint32_t magic = 0x46554747;
  uint32_t version = 3;
  uint64_t alignment = 32;  // Layout only: a general.alignment entry is added separately.
  std::optional<uint64_t> tensor_count;  // Overrides the real counts in the header.
  std::optional<uint64_t> kv_count;

  // A metadata entry with raw value bytes (which may be invalid for the type).
  uint64_t AddRaw(const std::string& key, uint32_t type, const std::vector<uint8_t>& value) {
    uint64_t at = kHeaderBytes + metadata_.size();
    metadata_.PutString(key).Put<uint32_t>(type).PutBytes(value);
    ++entries_;
    return at;
  }
  template <typename T>
  uint64_t Add(const std::string& key, uint32_t type, T value) {
    ByteSink v;
    v.Put<T>(value);
    return AddRaw(key, type, v.bytes());
  }
  uint64_t AddString(const std::string& key, const std::string& value) {
    ByteSink v;
    v.PutString(value);
    return AddRaw(key, kString, v.bytes());
  }
  uint64_t AddStringArray(const std::string& key, const std::vector<std::string>& items) {
    ByteSink v;
    v.Put<uint32_t>(kString).Put<uint64_t>(items.size());
    for (const std::string& s : items) v.PutString(s);
    return AddRaw(key, kArray, v.bytes());
  }
  template <typename T>
  uint64_t AddArray(const std::string& key, uint32_t elem_type, const std::vector<T>& items) {
    ByteSink v;
    v.Put<uint32_t>(elem_type).Put<uint64_t>(items.size());
    for (const T& item : items) v.Put<T>(item);
    return AddRaw(key, kArray, v.bytes());
  }

  // Adds a tensor whose data is a deterministic pattern of the right size for its type.
  Tensor& AddTensor(const std::string& name, uint32_t type, std::vector<uint64_t> dims,
                    std::optional<uint64_t> offset = std::nullopt) {
    // Hostile shapes (too large to hold) get no data; the parser rejects them first.
    uint64_t elements = 1;
    for (uint64_t d : dims) elements = d > (1u << 20) ? 0 : elements * d;
    Tensor t{name, std::move(dims), type, offset, {}};
    t.data.resize(elements > (1u << 20) ? 0 : TensorBytes(type, elements));
    for (size_t i = 0; i < t.data.size(); ++i) {
      t.data[i] = static_cast<uint8_t>(i * 7 + tensors_.size() * 31 + 1);
    }
    tensors_.push_back(std::move(t));
    return tensors_.back();
  }

  // Byte offset of tensor descriptor `index` in the finished file. Valid once all metadata
  // and the tensors before it are added.
  uint64_t DescriptorOffset(size_t index) const {
    uint64_t at = kHeaderBytes + metadata_.size();
    for (size_t i = 0; i < index; ++i) at += DescriptorBytes(tensors_[i]);
    return at;
  }
  // Offsets of fields inside descriptor `index`.
  uint64_t DimsCountOffset(size_t index) const {
    return DescriptorOffset(index) + 8 + tensors_[index].name.size();
  }
  uint64_t DimOffset(size_t index, size_t dim) const {
    return DimsCountOffset(index) + 4 + 8 * dim;
  }
  uint64_t TypeOffset(size_t index) const { return DimOffset(index, tensors_[index].dims.size()); }
  uint64_t DataOffsetOffset(size_t index) const { return TypeOffset(index) + 4; }

  // Where the data section starts in the finished file.
  uint64_t DataStart() const {
    uint64_t end = DescriptorOffset(tensors_.size());
    return (end + alignment - 1) / alignment * alignment;
  }
  // The data offsets the tensors get.
  std::vector<uint64_t> DataOffsets() const {
    std::vector<uint64_t> offsets;
    uint64_t next = 0;
    for (const Tensor& t : tensors_) {
      uint64_t offset = t.offset.value_or((next + alignment - 1) / alignment * alignment);
      offsets.push_back(offset);
      next = offset + t.data.size();
    }
    return offsets;
  }

  std::vector<uint8_t> Build() const {
    ByteSink out;
    out.Put<uint32_t>(magic).Put<uint32_t>(version);
    out.Put<uint64_t>(tensor_count.value_or(tensors_.size()));
    out.Put<uint64_t>(kv_count.value_or(entries_));
    out.PutBytes(metadata_.bytes());
    std::vector<uint64_t> offsets = DataOffsets();
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const Tensor& t = tensors_[i];
      out.PutString(t.name).Put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
      for (uint64_t d : t.dims) out.Put<uint64_t>(d);
      out.Put<uint32_t>(t.type).Put<uint64_t>(offsets[i]);
    }
    std::vector<uint8_t> bytes = out.bytes();
    if (tensors_.empty()) return bytes;
    uint64_t data_start = DataStart();
    uint64_t data_end = 0;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      data_end = std::max(data_end, offsets[i] + tensors_[i].data.size());
    }
    bytes.resize(data_start + data_end, 0);
    for (size_t i = 0; i < tensors_.size(); ++i) {
      std::copy(tensors_[i].data.begin(), tensors_[i].data.end(),
                bytes.begin() + static_cast<ptrdiff_t>(data_start + offsets[i]));
    }
    return bytes;
  }

  const std::vector<Tensor>& tensors() const { return tensors_; }

 private:
  static uint64_t DescriptorBytes(const Tensor& t) {
    return 8 + t.name.size() + 4 + 8 * t.dims.size() + 4 + 8;
  }

  ByteSink metadata_;
  uint64_t entries_ = 0;
  std::vector<Tensor> tensors_;
};

absl::StatusOr<std::unique_ptr<GgufFile>> ParseBytes(const std::vector<uint8_t>& bytes) {
  return GgufFile::Parse(bytes, "test.gguf");
}

// Parses `bytes`, requires InvalidArgument, and requires the message to contain each of
// `fragments` and the byte offset `at`. Returns the message.
std::string RequireError(const std::vector<uint8_t>& bytes,
                         const std::vector<std::string>& fragments, uint64_t at) {
  absl::StatusOr<std::unique_ptr<GgufFile>> file = ParseBytes(bytes);
  REQUIRE_FALSE(file.ok());
  std::string message(file.status().message());
  INFO(message);
  REQUIRE(file.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE_THAT(message, Contains("test.gguf"));
  for (const std::string& f : fragments) REQUIRE_THAT(message, Contains(f));
  REQUIRE_THAT(message, Contains(absl::StrCat("(at byte offset ", at, ")")));
  return message;
}

// A small valid file: a few metadata entries of several kinds and three tensors.
GgufTestWriter SmallWriter() {
  GgufTestWriter w;
  w.AddString("general.architecture", "llama");
  w.Add<uint32_t>("llama.block_count", kU32, 2);
  w.AddStringArray("tokenizer.ggml.tokens", {"a", "bc", ""});
  w.AddArray<uint8_t>("flags", kBool, {1, 0});
  w.AddTensor("w.q4_0", kTensorQ4_0, {32, 2});
  w.AddTensor("w.f32", kTensorF32, {3});
  w.AddTensor("w.q8_0", kTensorQ8_0, {32, 1});
  return w;
}

TEST_CASE("GgufFile: a file with every value type and tensor type parses", "[engine][gguf]") {
  GgufTestWriter w;
  w.Add<uint8_t>("v.u8", kU8, 200);
  w.Add<int8_t>("v.i8", kI8, -5);
  w.Add<uint16_t>("v.u16", kU16, 60000);
  w.Add<int16_t>("v.i16", kI16, -30000);
  w.Add<uint32_t>("v.u32", kU32, 4000000000u);
  w.Add<int32_t>("v.i32", kI32, -2000000000);
  w.Add<float>("v.f32", kF32, 1.5f);
  w.Add<uint8_t>("v.bool_true", kBool, 1);
  w.Add<uint8_t>("v.bool_false", kBool, 0);
  w.AddString("v.string", "h\xC3\xA9llo \xF0\x9F\x98\x80");
  w.AddString("v.empty_string", "");
  w.Add<uint64_t>("v.u64", kU64, uint64_t{1} << 62);
  w.Add<int64_t>("v.i64", kI64, -(int64_t{1} << 50));
  w.Add<double>("v.f64", kF64, -2.25);
  w.AddStringArray("a.strings", {"<|endoftext|>", "", "\xC4\xA0the"});
  w.AddArray<int32_t>("a.i32", kI32, {3, -1, 7});
  w.AddArray<uint64_t>("a.u64", kU64, {0, 1, uint64_t{1} << 40});
  w.AddArray<uint8_t>("a.u8", kU8, {});
  w.AddArray<float>("a.f32", kF32, {0.5f, -1.0f});
  w.AddArray<double>("a.f64", kF64, {3.0});
  w.AddArray<uint8_t>("a.bool", kBool, {1, 0, 1});
  w.AddTensor("t.f32", kTensorF32, {5, 3});
  w.AddTensor("t.f16", kTensorF16, {7});
  w.AddTensor("t.bf16", kTensorBF16, {4, 2, 3});
  w.AddTensor("t.q4_0", kTensorQ4_0, {64, 2});
  w.AddTensor("t.q4_1", kTensorQ4_1, {32, 3, 1, 2});
  w.AddTensor("t.q8_0", kTensorQ8_0, {96});
  std::vector<uint8_t> bytes = w.Build();

  absl::StatusOr<std::unique_ptr<GgufFile>> parsed = ParseBytes(bytes);
  INFO(parsed.status().ToString());
  REQUIRE(parsed.ok());
  const GgufFile& file = **parsed;
  CHECK(file.version() == 3);
  CHECK(file.alignment() == 32);
  CHECK(file.source_name() == "test.gguf");
  CHECK(file.metadata().size() == 21);

  SECTION("scalars") {
    CHECK(*file.GetInt("v.u8") == 200);
    CHECK(*file.GetInt("v.i8") == -5);
    CHECK(*file.GetInt("v.u16") == 60000);
    CHECK(*file.GetInt("v.i16") == -30000);
    CHECK(*file.GetInt("v.u32") == 4000000000LL);
    CHECK(*file.GetInt("v.i32") == -2000000000);
    CHECK(*file.GetInt("v.u64") == (int64_t{1} << 62));
    CHECK(*file.GetInt("v.i64") == -(int64_t{1} << 50));
    CHECK(*file.GetFloat("v.f32") == 1.5);
    CHECK(*file.GetFloat("v.f64") == -2.25);
    CHECK(*file.GetFloat("v.u16") == 60000.0);  // Integers read as floats too.
    CHECK(*file.GetBool("v.bool_true"));
    CHECK_FALSE(*file.GetBool("v.bool_false"));
    CHECK(*file.GetString("v.string") == "h\xC3\xA9llo \xF0\x9F\x98\x80");
    CHECK(file.GetString("v.empty_string").value().empty());
    CHECK(file.metadata().at("v.u8").type == GgufValueType::kUint8);
    CHECK(file.metadata().at("v.f64").type == GgufValueType::kFloat64);
  }
  SECTION("arrays") {
    std::span<const std::string> strings = *file.GetStringArray("a.strings");
    REQUIRE(strings.size() == 3);
    CHECK(strings[0] == "<|endoftext|>");
    CHECK(strings[1].empty());
    CHECK(strings[2] == "\xC4\xA0the");
    std::span<const int64_t> ints = *file.GetIntArray("a.i32");
    CHECK(std::vector<int64_t>(ints.begin(), ints.end()) == std::vector<int64_t>{3, -1, 7});
    std::span<const int64_t> u64s = *file.GetIntArray("a.u64");
    CHECK(std::vector<int64_t>(u64s.begin(), u64s.end()) ==
          std::vector<int64_t>{0, 1, int64_t{1} << 40});
    CHECK(file.GetIntArray("a.u8")->empty());
    const GgufValue& floats = file.metadata().at("a.f32");
    CHECK(floats.type == GgufValueType::kArray);
    CHECK(floats.array_type == GgufValueType::kFloat32);
    CHECK(std::get<std::vector<double>>(floats.value) == std::vector<double>{0.5, -1.0});
    CHECK(std::get<std::vector<double>>(file.metadata().at("a.f64").value) ==
          std::vector<double>{3.0});
    CHECK(std::get<std::vector<bool>>(file.metadata().at("a.bool").value) ==
          std::vector<bool>{true, false, true});
  }
  SECTION("accessors report missing keys and wrong types") {
    CHECK(file.Has("v.u8"));
    CHECK_FALSE(file.Has("v.nope"));
    CHECK(file.GetInt("v.nope").status().code() == absl::StatusCode::kNotFound);
    CHECK_THAT(std::string(file.GetInt("v.nope").status().message()), Contains("v.nope"));
    CHECK(file.GetInt("v.string").status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(file.GetString("v.u8").status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(file.GetBool("v.u8").status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(file.GetFloat("v.string").status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(file.GetStringArray("a.i32").status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(file.GetIntArray("a.strings").status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(file.GetIntArray("a.f32").status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(file.GetIntArray("v.i32").status().code() == absl::StatusCode::kInvalidArgument);
  }
  SECTION("tensors") {
    struct Expected {
      const char* name;
      TensorType type;
      std::vector<int64_t> shape;
      int64_t elements;
      int64_t rows;
    };
    const std::vector<Expected> expected = {
        {"t.f32", TensorType::kF32, {5, 3}, 15, 3},
        {"t.f16", TensorType::kF16, {7}, 7, 1},
        {"t.bf16", TensorType::kBF16, {4, 2, 3}, 24, 6},
        {"t.q4_0", TensorType::kQ4_0, {64, 2}, 128, 2},
        {"t.q4_1", TensorType::kQ4_1, {32, 3, 1, 2}, 192, 6},
        {"t.q8_0", TensorType::kQ8_0, {96}, 96, 1},
    };
    REQUIRE(file.tensors().size() == expected.size());
    std::vector<uint64_t> offsets = w.DataOffsets();
    for (size_t i = 0; i < expected.size(); ++i) {
      INFO(expected[i].name);
      const GgufTensor& t = file.tensors()[i];
      CHECK(t.name == expected[i].name);
      CHECK(t.type == expected[i].type);
      CHECK(t.shape == expected[i].shape);
      CHECK(t.num_elements == expected[i].elements);
      CHECK(t.rows() == expected[i].rows);
      CHECK(t.offset == offsets[i]);
      CHECK(t.offset % 32 == 0);
      CHECK(t.data.data() == bytes.data() + w.DataStart() + offsets[i]);
      CHECK(std::vector<uint8_t>(t.data.begin(), t.data.end()) == w.tensors()[i].data);
      CHECK(file.FindTensor(expected[i].name) == &t);
    }
    CHECK(file.tensors()[3].data.size() == 4 * 18);
    CHECK(file.tensors()[4].data.size() == 6 * 20);
    CHECK(file.tensors()[5].data.size() == 3 * 34);
    CHECK(file.FindTensor("t.missing") == nullptr);
  }
}

TEST_CASE("GgufFile: version 2, general.alignment and metadata-only files parse",
          "[engine][gguf]") {
  SECTION("version 2") {
    GgufTestWriter w = SmallWriter();
    w.version = 2;
    absl::StatusOr<std::unique_ptr<GgufFile>> file = ParseBytes(w.Build());
    REQUIRE(file.ok());
    CHECK((*file)->version() == 2);
  }
  SECTION("general.alignment moves the data section and the tensor offsets") {
    GgufTestWriter w;
    w.alignment = 64;
    w.Add<uint32_t>("general.alignment", kU32, 64);
    w.AddTensor("a", kTensorF32, {3});
    w.AddTensor("b", kTensorF16, {5});
    std::vector<uint8_t> bytes = w.Build();
    absl::StatusOr<std::unique_ptr<GgufFile>> file = ParseBytes(bytes);
    INFO(file.status().ToString());
    REQUIRE(file.ok());
    CHECK((*file)->alignment() == 64);
    CHECK((*file)->tensors()[1].offset == 64);
    CHECK(w.DataStart() % 64 == 0);
    CHECK((*file)->tensors()[1].data.data() == bytes.data() + w.DataStart() + 64);
  }
  SECTION("no tensors") {
    GgufTestWriter w;
    w.AddString("general.name", "empty");
    absl::StatusOr<std::unique_ptr<GgufFile>> file = ParseBytes(w.Build());
    REQUIRE(file.ok());
    CHECK((*file)->tensors().empty());
    CHECK(*(*file)->GetString("general.name") == "empty");
  }
}

TEST_CASE("GgufFile: a bad header is rejected at its field", "[engine][gguf]") {
  SECTION("bad magic") {
    GgufTestWriter w = SmallWriter();
    w.magic = 0x46554746;
    RequireError(w.Build(), {"bad magic"}, 0);
  }
  SECTION("empty file") { RequireError({}, {"magic", "need 4 bytes, 0 left"}, 0); }
  SECTION("bad versions") {
    for (uint32_t version : {0u, 1u, 4u, 0x03000000u}) {
      GgufTestWriter w = SmallWriter();
      w.version = version;
      RequireError(w.Build(), {absl::StrCat("unsupported GGUF version ", version)}, 4);
    }
  }
  SECTION("huge tensor count") {
    GgufTestWriter w = SmallWriter();
    w.tensor_count = uint64_t{1} << 60;
    RequireError(w.Build(), {"tensor count 1152921504606846976 exceeds the file size"}, 8);
  }
  SECTION("huge metadata count") {
    GgufTestWriter w = SmallWriter();
    w.kv_count = ~uint64_t{0};
    RequireError(w.Build(), {"metadata count", "exceeds the file size"}, 16);
  }
  SECTION("metadata count one too many runs into the tensor descriptors") {
    GgufTestWriter w = SmallWriter();
    w.kv_count = 5;
    // Entry 4 starts at the first descriptor; its "type" is read from the name's bytes.
    absl::StatusOr<std::unique_ptr<GgufFile>> file = ParseBytes(w.Build());
    REQUIRE_FALSE(file.ok());
    CHECK(file.status().code() == absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("GgufFile: bad metadata is rejected at its field", "[engine][gguf]") {
  GgufTestWriter w;
  w.AddString("general.architecture", "llama");

  SECTION("huge key length") {
    ByteSink raw;
    raw.Put<uint64_t>(uint64_t{1} << 40);
    uint64_t at = w.AddRaw("", 0, {});  // Placeholder entry whose key length is patched.
    std::vector<uint8_t> bytes = w.Build();
    std::memcpy(bytes.data() + at, raw.bytes().data(), 8);
    RequireError(bytes, {"key of metadata entry 1 has length 1099511627776, over the limit"}, at);
  }
  SECTION("string value longer than the file") {
    ByteSink v;
    v.Put<uint64_t>(1 << 20).Put<uint32_t>(0);
    uint64_t at = w.AddRaw("s", kString, v.bytes());
    RequireError(w.Build(), {"truncated value of 's'", "length 1048576"}, at + 8 + 1 + 4);
  }
  SECTION("huge string length in an array") {
    ByteSink v;
    v.Put<uint32_t>(kString).Put<uint64_t>(2).PutString("ok").Put<uint64_t>(~uint64_t{0});
    uint64_t at = w.AddRaw("arr", kArray, v.bytes());
    RequireError(w.Build(), {"element 1 of 'arr' has length 18446744073709551615"},
                 at + 8 + 3 + 4 + 4 + 8 + 10);
  }
  SECTION("huge array count") {
    for (uint32_t elem : {kU8, kU64, kString, kBool}) {
      GgufTestWriter copy = w;
      ByteSink v;
      v.Put<uint32_t>(elem).Put<uint64_t>(uint64_t{1} << 61).Put<uint64_t>(0);
      uint64_t at = copy.AddRaw("arr", kArray, v.bytes());
      RequireError(copy.Build(), {"array 'arr' claims 2305843009213693952 elements"},
                   at + 8 + 3 + 4 + 4);
    }
  }
  SECTION("unknown value type") {
    uint64_t at = w.Add<uint32_t>("weird", 13, 0);
    RequireError(w.Build(), {"metadata 'weird' has unknown type 13"}, at + 8 + 5);
  }
  SECTION("unknown array element type") {
    ByteSink v;
    v.Put<uint32_t>(0xFFFFFFFF).Put<uint64_t>(0);
    uint64_t at = w.AddRaw("arr", kArray, v.bytes());
    RequireError(w.Build(), {"array 'arr' has unknown element type 4294967295"}, at + 8 + 3 + 4);
  }
  SECTION("nested array") {
    ByteSink v;
    v.Put<uint32_t>(kArray).Put<uint64_t>(1).Put<uint32_t>(kU8).Put<uint64_t>(1).Put<uint8_t>(1);
    uint64_t at = w.AddRaw("nested", kArray, v.bytes());
    RequireError(w.Build(), {"array 'nested' nests arrays"}, at + 8 + 6 + 4);
  }
  SECTION("bool of value 2") {
    uint64_t at = w.Add<uint8_t>("flag", kBool, 2);
    RequireError(w.Build(), {"value of 'flag' is a bool of value 2"}, at + 8 + 4 + 4);
  }
  SECTION("bool of value 2 inside an array") {
    uint64_t at = w.AddArray<uint8_t>("flags", kBool, {1, 0, 2});
    RequireError(w.Build(), {"value of 'flags' is a bool of value 2"}, at + 8 + 5 + 4 + 4 + 8 + 2);
  }
  SECTION("uint64 above INT64_MAX") {
    uint64_t at = w.Add<uint64_t>("big", kU64, ~uint64_t{0});
    RequireError(w.Build(), {"value of 'big' is too large"}, at + 8 + 3 + 4);
  }
  SECTION("duplicate key") {
    w.Add<uint32_t>("n", kU32, 1);
    uint64_t at = w.Add<uint32_t>("n", kU32, 2);
    RequireError(w.Build(), {"duplicate metadata key 'n'"}, at);
  }
  SECTION("empty key") {
    uint64_t at = w.Add<uint32_t>("", kU32, 1);
    RequireError(w.Build(), {"metadata entry 1 has an empty key"}, at);
  }
  SECTION("bad general.alignment") {
    for (uint32_t alignment : {0u, 3u, 48u, 1u << 20, 0x80000000u}) {
      GgufTestWriter copy = w;
      uint64_t at = copy.Add<uint32_t>("general.alignment", kU32, alignment);
      copy.AddTensor("t", kTensorF32, {8});
      RequireError(copy.Build(),
                   {absl::StrCat("general.alignment ", alignment, " is not a power of two")}, at);
    }
  }
  SECTION("general.alignment of the wrong type") {
    uint64_t at = w.AddString("general.alignment", "32");
    RequireError(w.Build(), {"general.alignment is not an integer"}, at);
  }
}

TEST_CASE("GgufFile: bad tensor descriptors are rejected at their field", "[engine][gguf]") {
  GgufTestWriter w;
  w.AddString("general.architecture", "llama");
  w.AddTensor("first", kTensorF32, {16});

  SECTION("duplicate tensor") {
    w.AddTensor("first", kTensorF32, {8});
    RequireError(w.Build(), {"duplicate tensor 'first'"}, w.DescriptorOffset(1));
  }
  SECTION("empty name") {
    w.AddTensor("", kTensorF32, {8});
    RequireError(w.Build(), {"tensor 1 has an empty name"}, w.DescriptorOffset(1));
  }
  SECTION("huge name length") {
    w.AddTensor("x", kTensorF32, {8});
    std::vector<uint8_t> bytes = w.Build();
    uint64_t huge = uint64_t{1} << 32;
    std::memcpy(bytes.data() + w.DescriptorOffset(1), &huge, 8);
    RequireError(bytes, {"name of tensor 1 has length 4294967296"}, w.DescriptorOffset(1));
  }
  SECTION("zero dimensions") {
    w.AddTensor("scalar", kTensorF32, {});
    RequireError(w.Build(), {"tensor 'scalar' has 0 dimensions"}, w.DimsCountOffset(1));
  }
  SECTION("too many dimensions") {
    w.AddTensor("five", kTensorF32, {1, 1, 1, 1, 2});
    RequireError(w.Build(), {"tensor 'five' has 5 dimensions (1 to 4 allowed)"},
                 w.DimsCountOffset(1));
  }
  SECTION("a dimension of zero") {
    w.AddTensor("empty", kTensorF32, {4, 0});
    RequireError(w.Build(), {"tensor 'empty' dimension 1 is 0"}, w.DimOffset(1, 1));
  }
  SECTION("dimension overflow") {
    w.AddTensor("huge", kTensorF32, {uint64_t{1} << 32, uint64_t{1} << 32});
    RequireError(w.Build(), {"tensor 'huge' dimension 1 is 4294967296"}, w.DimOffset(1, 1));
  }
  SECTION("dimension product overflowing 64 bits") {
    w.AddTensor("wrap", kTensorF32,
                {uint64_t{1} << 20, uint64_t{1} << 20, uint64_t{1} << 20, uint64_t{1} << 20});
    RequireError(w.Build(), {"tensor 'wrap' dimension 2"}, w.DimOffset(1, 2));
  }
  SECTION("dimension above INT64_MAX") {
    w.AddTensor("neg", kTensorF32, {~uint64_t{0}});
    RequireError(w.Build(), {"tensor 'neg' dimension 0 is 18446744073709551615"},
                 w.DimOffset(1, 0));
  }
  SECTION("unsupported tensor types") {
    for (uint32_t type : {6u, 12u, 29u, 31u, 0xFFFFFFFFu}) {
      GgufTestWriter copy = w;
      copy.AddTensor("odd", type, {32});
      RequireError(copy.Build(), {absl::StrCat("tensor 'odd' has unsupported type ", type)},
                   copy.TypeOffset(1));
    }
  }
  SECTION("row not a multiple of the block") {
    for (uint32_t type : {kTensorQ4_0, kTensorQ4_1, kTensorQ8_0}) {
      GgufTestWriter copy = w;
      copy.AddTensor("ragged", type, {48, 2}, 64);
      RequireError(
          copy.Build(),
          {"tensor 'ragged'", "rows of 48 elements", "not a multiple of its block size 32"},
          copy.DimOffset(1, 0));
    }
  }
  SECTION("misaligned offset") {
    w.AddTensor("second", kTensorF32, {8}, 72);
    RequireError(w.Build(), {"tensor 'second' data offset 72 is not aligned to 32"},
                 w.DataOffsetOffset(1));
  }
  SECTION("tensor data past the end") {
    w.AddTensor("last", kTensorQ8_0, {64});
    std::vector<uint8_t> bytes = w.Build();
    bytes.pop_back();
    RequireError(bytes,
                 {"tensor 'last' data (68 bytes at offset 64) runs past the end of the 131-byte"},
                 w.DescriptorOffset(1));
  }
  SECTION("tensor offset far past the end") {
    w.AddTensor("far", kTensorF32, {8});
    std::vector<uint8_t> valid = w.Build();
    for (uint64_t far : {uint64_t{1} << 62, ~uint64_t{31}}) {  // The second wraps offset + size.
      std::vector<uint8_t> bytes = valid;
      std::memcpy(bytes.data() + w.DataOffsetOffset(1), &far, 8);
      RequireError(bytes, {absl::StrCat("tensor 'far' data (32 bytes at offset ", far, ")")},
                   w.DescriptorOffset(1));
    }
  }
  SECTION("overlapping tensors") {
    w.AddTensor("overlap", kTensorF32, {8}, 32);  // "first" covers [0, 64).
    RequireError(w.Build(), {"tensor 'overlap' overlaps tensor 'first'"}, w.DescriptorOffset(1));
  }
  SECTION("overlap found whatever the descriptor order") {
    GgufTestWriter v;
    v.AddTensor("late", kTensorF32, {8}, 64);
    v.AddTensor("early", kTensorF32, {24}, 0);  // Covers [0, 96), so "late" overlaps it.
    RequireError(v.Build(), {"tensor 'late' overlaps tensor 'early'"}, v.DescriptorOffset(0));
  }
  SECTION("file ends before the data section") {
    std::vector<uint8_t> bytes = w.Build();
    bytes.resize(w.DescriptorOffset(1) + 1);  // One byte of padding, no data.
    RequireError(bytes, {"truncated before the tensor data section"}, w.DescriptorOffset(1));
  }
}

TEST_CASE("GgufFile: every truncation of a valid file is an error", "[engine][gguf]") {
  std::vector<uint8_t> bytes = SmallWriter().Build();
  REQUIRE(ParseBytes(bytes).ok());
  for (size_t length = 0; length < bytes.size(); ++length) {
    // An exact-size copy, so that AddressSanitizer sees any read past the end.
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(length));
    absl::StatusOr<std::unique_ptr<GgufFile>> file = ParseBytes(prefix);
    INFO("length " << length);
    REQUIRE_FALSE(file.ok());
    REQUIRE(file.status().code() == absl::StatusCode::kInvalidArgument);
    REQUIRE_THAT(std::string(file.status().message()), Contains("(at byte offset "));
  }
}

// Reads everything a parsed file exposes, so that AddressSanitizer checks the spans.
uint64_t TouchEverything(const GgufFile& file) {
  uint64_t sum = file.metadata().size();
  for (const GgufTensor& t : file.tensors()) {
    for (uint8_t b : t.data) sum += b;
    sum += static_cast<uint64_t>(t.rows());
  }
  return sum;
}

TEST_CASE("GgufFile: random mutations of a valid file give errors, never crashes",
          "[engine][gguf]") {
  GgufTestWriter w = SmallWriter();
  w.Add<uint32_t>("general.alignment", kU32, 32);
  w.Add<float>("llama.rope.freq_base", kF32, 10000.0f);
  w.AddArray<int32_t>("tokenizer.ggml.token_type", kI32, {1, 3, 1});
  std::vector<uint8_t> valid = w.Build();
  REQUIRE(ParseBytes(valid).ok());

  // Values that tend to hit edge cases when written over a length, count, type or offset.
  const uint64_t kInteresting[] = {
      0,          1,          2,          3,          4,          7,
      8,          9,          12,         13,         30,         31,
      32,         33,         0x7F,       0xFF,       0xFFFF,     0x7FFFFFFF,
      0x80000000, 0xFFFFFFFF, 1ull << 32, 1ull << 40, 1ull << 62, 0x7FFFFFFFFFFFFFFF,
      ~0ull,      ~0ull - 7};
  std::mt19937_64 rng(20261123);
  std::map<std::string, int> outcomes;
  constexpr int kMutations = 4000;
  for (int iteration = 0; iteration < kMutations; ++iteration) {
    std::vector<uint8_t> bytes = valid;
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !bytes.empty(); ++e) {
      size_t at = rng() % bytes.size();
      switch (rng() % 6) {
        case 0:  // Random byte.
          bytes[at] = static_cast<uint8_t>(rng());
          break;
        case 1:  // Flip one bit.
          bytes[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        case 2: {  // An interesting 8-byte or 4-byte value.
          uint64_t v = kInteresting[rng() % std::size(kInteresting)];
          size_t width = rng() % 2 == 0 ? 8 : 4;
          for (size_t i = 0; i < width && at + i < bytes.size(); ++i) {
            bytes[at + i] = static_cast<uint8_t>(v >> (8 * i));
          }
          break;
        }
        case 3:  // Truncate.
          bytes.resize(at);
          break;
        case 4:  // Delete a run of bytes.
          bytes.erase(
              bytes.begin() + static_cast<ptrdiff_t>(at),
              bytes.begin() + static_cast<ptrdiff_t>(std::min(bytes.size(), at + 1 + rng() % 16)));
          break;
        default:  // Insert a run of random bytes.
          bytes.insert(bytes.begin() + static_cast<ptrdiff_t>(at), 1 + rng() % 16,
                       static_cast<uint8_t>(rng()));
          break;
      }
    }
    bytes.shrink_to_fit();
    absl::StatusOr<std::unique_ptr<GgufFile>> file = ParseBytes(bytes);
    if (file.ok()) {
      TouchEverything(**file);
      ++outcomes["ok"];
    } else {
      INFO("iteration " << iteration << ": " << file.status().ToString());
      REQUIRE(file.status().code() == absl::StatusCode::kInvalidArgument);
      REQUIRE_THAT(std::string(file.status().message()), Contains("(at byte offset "));
      ++outcomes["error"];
    }
  }
  INFO("ok " << outcomes["ok"] << ", errors " << outcomes["error"]);
  CHECK(outcomes["error"] > kMutations / 2);
  CHECK(outcomes["ok"] > 0);  // Some mutations only touch tensor data or string bytes.
}

TEST_CASE("GgufFile: the default model opens with the expected metadata and tensors",
          "[engine][gguf][model]") {
  const std::string path = tessera::testing::DefaultModelPath();
  absl::StatusOr<std::unique_ptr<GgufFile>> opened = GgufFile::Open(path);
  INFO(opened.status().ToString() << " (scripts/fetch_model fetches the model)");
  REQUIRE(opened.ok());
  const GgufFile& file = **opened;
  CHECK(file.version() == 3);
  CHECK(file.alignment() == 32);
  CHECK(file.source_name() == path);
  CHECK(file.metadata().size() == 33);

  CHECK(*file.GetString("general.architecture") == "llama");
  CHECK(*file.GetInt("llama.block_count") == 30);
  CHECK(*file.GetInt("llama.context_length") == 8192);
  CHECK(*file.GetInt("llama.embedding_length") == 576);
  CHECK(*file.GetInt("llama.feed_forward_length") == 1536);
  CHECK(*file.GetInt("llama.attention.head_count") == 9);
  CHECK(*file.GetInt("llama.attention.head_count_kv") == 3);
  CHECK(*file.GetInt("llama.rope.dimension_count") == 64);
  CHECK(*file.GetInt("llama.vocab_size") == 49152);
  CHECK(*file.GetFloat("llama.rope.freq_base") == 100000.0);
  CHECK(*file.GetFloat("llama.attention.layer_norm_rms_epsilon") == Approx(1e-5));
  CHECK(*file.GetInt("general.file_type") == 3);  // Mostly Q4_1.
  CHECK(*file.GetString("tokenizer.ggml.model") == "gpt2");
  CHECK(*file.GetString("tokenizer.ggml.pre") == "smollm");
  CHECK(*file.GetInt("tokenizer.ggml.bos_token_id") == 1);
  CHECK(*file.GetInt("tokenizer.ggml.eos_token_id") == 2);
  CHECK_FALSE(*file.GetBool("tokenizer.ggml.add_bos_token"));
  CHECK_THAT(*file.GetString("tokenizer.chat_template"), Contains("<|im_start|>"));
  std::span<const std::string> tokens = *file.GetStringArray("tokenizer.ggml.tokens");
  REQUIRE(tokens.size() == 49152);
  CHECK(tokens[0] == "<|endoftext|>");
  CHECK(tokens[1] == "<|im_start|>");
  CHECK(tokens[2] == "<|im_end|>");
  CHECK(file.GetStringArray("tokenizer.ggml.merges")->size() == 48900);
  std::span<const int64_t> token_types = *file.GetIntArray("tokenizer.ggml.token_type");
  REQUIRE(token_types.size() == 49152);
  CHECK(token_types[0] == 3);  // Control.

  REQUIRE(file.tensors().size() == 272);
  std::map<TensorType, int> by_type;
  for (const GgufTensor& t : file.tensors()) ++by_type[t.type];
  CHECK(by_type[TensorType::kQ4_1] == 210);
  CHECK(by_type[TensorType::kF32] == 61);
  CHECK(by_type[TensorType::kQ8_0] == 1);
  CHECK(file.FindTensor("output.weight") == nullptr);  // Tied to token_embd.

  struct Expected {
    const char* name;
    TensorType type;
    std::vector<int64_t> shape;
    uint64_t bytes;
  };
  const Expected expected[] = {
      {"token_embd.weight", TensorType::kQ8_0, {576, 49152}, 576 * 49152 / 32 * 34},
      {"output_norm.weight", TensorType::kF32, {576}, 576 * 4},
      {"blk.0.attn_norm.weight", TensorType::kF32, {576}, 576 * 4},
      {"blk.0.attn_q.weight", TensorType::kQ4_1, {576, 576}, 576 * 576 / 32 * 20},
      {"blk.0.attn_k.weight", TensorType::kQ4_1, {576, 192}, 576 * 192 / 32 * 20},
      {"blk.0.attn_v.weight", TensorType::kQ4_1, {576, 192}, 576 * 192 / 32 * 20},
      {"blk.0.attn_output.weight", TensorType::kQ4_1, {576, 576}, 576 * 576 / 32 * 20},
      {"blk.0.ffn_gate.weight", TensorType::kQ4_1, {576, 1536}, 576 * 1536 / 32 * 20},
      {"blk.0.ffn_up.weight", TensorType::kQ4_1, {576, 1536}, 576 * 1536 / 32 * 20},
      {"blk.0.ffn_down.weight", TensorType::kQ4_1, {1536, 576}, 1536 * 576 / 32 * 20},
      {"blk.29.ffn_norm.weight", TensorType::kF32, {576}, 576 * 4},
      {"blk.29.ffn_down.weight", TensorType::kQ4_1, {1536, 576}, 1536 * 576 / 32 * 20},
  };
  for (const Expected& e : expected) {
    INFO(e.name);
    const GgufTensor* t = file.FindTensor(e.name);
    REQUIRE(t != nullptr);
    CHECK(t->type == e.type);
    CHECK(t->shape == e.shape);
    CHECK(t->data.size() == e.bytes);
  }
  CHECK(file.FindTensor("token_embd.weight")->offset == 0);
  CHECK(file.FindTensor("blk.0.attn_norm.weight")->offset == 30081024);
  for (int layer = 0; layer < 30; ++layer) {
    CHECK(file.FindTensor(absl::StrCat("blk.", layer, ".attn_q.weight")) != nullptr);
  }
}

TEST_CASE("GgufFile: opening a missing file is NotFound and names the path", "[engine][gguf]") {
  const std::string path = tessera::testing::TestDataPath("no/such/model.gguf");
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  REQUIRE_FALSE(file.ok());
  CHECK(file.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(file.status().message()), Contains(path));
}

}  // namespace
}  // namespace tessera::engine
