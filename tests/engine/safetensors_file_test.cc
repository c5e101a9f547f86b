#include "engine/safetensors/safetensors_file.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/safetensors/fp8.h"
#include "kernels/fp16.h"

namespace tessera::engine {
namespace {

using json = nlohmann::json;

// Lays out a file: the length, the header text as given, then `data`.
std::vector<uint8_t> FileBytes(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> bytes(8 + header.size() + data.size());
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(bytes.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(bytes.data() + 8 + header.size(), data.data(), data.size());
  return bytes;
}

template <typename T>
void Append(std::vector<uint8_t>& data, T value) {
  uint8_t raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));
  data.insert(data.end(), raw, raw + sizeof(T));
}

// A valid file: F32 [2, 3], BF16 [2], F16 [1] scalar-ish, I64 [1], and metadata.
struct GoodFile {
  std::string header;
  std::vector<uint8_t> data;
  GoodFile() {
    for (int i = 0; i < 6; ++i) Append<float>(data, 0.5f * static_cast<float>(i));
    Append<uint16_t>(data, kernels::Fp32ToBf16(1.5f));
    Append<uint16_t>(data, kernels::Fp32ToBf16(-2.0f));
    Append<uint16_t>(data, kernels::Fp32ToFp16(0.25f));
    Append<int64_t>(data, 42);
    json h = {{"__metadata__", {{"format", "pt"}}},
              {"w", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}},
              {"b", {{"dtype", "BF16"}, {"shape", {2}}, {"data_offsets", {24, 28}}}},
              {"h", {{"dtype", "F16"}, {"shape", {1}}, {"data_offsets", {28, 30}}}},
              {"n", {{"dtype", "I64"}, {"shape", {1}}, {"data_offsets", {30, 38}}}}};
    header = h.dump();
  }
  std::vector<uint8_t> bytes() const { return FileBytes(header, data); }
};

TEST_CASE("SafetensorsFile: a valid file parses and reads as floats", "[engine][safetensors]") {
  GoodFile good;
  std::vector<uint8_t> bytes = good.bytes();
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Parse(bytes, "good");
  REQUIRE(file.ok());
  REQUIRE((*file)->tensors().size() == 4);
  CHECK((*file)->tensors()[0].name == "w");  // In data order.
  CHECK((*file)->metadata().at("format") == "pt");

  const int64_t w_shape[] = {2, 3};
  absl::StatusOr<std::vector<float>> w = (*file)->ReadFloats("w", w_shape);
  REQUIRE(w.ok());
  CHECK(*w == std::vector<float>{0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 2.5f});
  const int64_t b_shape[] = {2};
  CHECK(*(*file)->ReadFloats("b", b_shape) == std::vector<float>{1.5f, -2.0f});
  const int64_t one[] = {1};
  CHECK(*(*file)->ReadFloats("h", one) == std::vector<float>{0.25f});

  absl::Status wrong_shape = (*file)->ReadFloats("w", b_shape).status();
  CHECK(wrong_shape.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(wrong_shape.message()).find("\"w\" has shape [2, 3]; expected [2]") !=
        std::string::npos);
  CHECK(std::string((*file)->ReadFloats("n", one).status().message()).find("is I64") !=
        std::string::npos);
  CHECK((*file)->ReadFloats("missing", one).status().code() == absl::StatusCode::kNotFound);
}

// Every malformed variant fails with InvalidArgument whose message contains `expected`.
void ExpectError(const std::vector<uint8_t>& bytes, const std::string& expected) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Parse(bytes, "bad.st");
  INFO(expected);
  REQUIRE_FALSE(file.ok());
  CHECK(file.status().code() == absl::StatusCode::kInvalidArgument);
  INFO(file.status().message());
  CHECK(std::string(file.status().message()).find("bad.st: ") == 0);
  CHECK(std::string(file.status().message()).find(expected) != std::string::npos);
}

std::string WithEntry(const std::string& name, const json& entry) {
  GoodFile good;
  json h = json::parse(good.header);
  h[name] = entry;
  return h.dump();
}

TEST_CASE("SafetensorsFile: malformed files get errors naming what and where",
          "[engine][safetensors]") {
  GoodFile good;
  ExpectError({1, 2, 3}, "the file is 3 bytes");
  {
    std::vector<uint8_t> bytes = good.bytes();
    bytes[5] = 0x7f;  // A header length far beyond the file.
    ExpectError(bytes, "exceeds the file");
  }
  ExpectError(FileBytes("{\"w\": [1, 2", {}), "malformed at byte offset");
  ExpectError(FileBytes("[1, 2]", {}), "is not an object");
  ExpectError(FileBytes(WithEntry("__metadata__", {{"k", 3}}), good.data),
              "__metadata__ value of \"k\" is not a string");
  ExpectError(FileBytes(WithEntry("w", 7), good.data), "tensor \"w\": the entry is not an object");
  ExpectError(
      FileBytes(WithEntry("w", {{"dtype", "Q4"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}),
                good.data),
      "tensor \"w\": unsupported dtype \"Q4\"");
  ExpectError(
      FileBytes(WithEntry("w", {{"dtype", "F32"}, {"shape", {2, -3}}, {"data_offsets", {0, 24}}}),
                good.data),
      "has a dimension that is not a count");
  ExpectError(FileBytes(WithEntry("w", {{"dtype", "F32"},
                                        {"shape", {1 << 30, 1 << 30}},
                                        {"data_offsets", {0, 24}}}),
                        good.data),
              "is too large");
  ExpectError(
      FileBytes(WithEntry("w", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 4000}}}),
                good.data),
      "are outside the 38-byte data section");
  ExpectError(
      FileBytes(WithEntry("w", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 20}}}),
                good.data),
      "span 20 bytes but F32 [2, 3] needs 24");
  ExpectError(
      FileBytes(WithEntry("w", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0}}}),
                good.data),
      "data_offsets is not an array of two offsets");
  ExpectError(
      FileBytes(WithEntry("w", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {-8, 16}}}),
                good.data),
      "are not byte offsets");
  // Two tensors over the same bytes, and bytes no tensor owns.
  ExpectError(
      FileBytes(WithEntry("x", {{"dtype", "U8"}, {"shape", {4}}, {"data_offsets", {20, 24}}}),
                good.data),
      "(overlap)");
  {
    std::vector<uint8_t> data = good.data;
    data.resize(data.size() + 3);
    ExpectError(FileBytes(good.header, data), "3 bytes at the end of the data section");
  }
  ExpectError(
      FileBytes(WithEntry("w", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {8, 24}}}),
                good.data),
      "(a hole)");
}

TEST_CASE("SafetensorsFile: every truncation of a valid file is refused cleanly",
          "[engine][safetensors]") {
  std::vector<uint8_t> bytes = GoodFile().bytes();
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    CHECK_FALSE(SafetensorsFile::Parse(cut, "cut").ok());
  }
}

TEST_CASE("SafetensorsFile: Open names a missing file", "[engine][safetensors]") {
  absl::Status status = SafetensorsFile::Open("/nonexistent/model.safetensors").status();
  CHECK_FALSE(status.ok());
  CHECK(std::string(status.message()).find("/nonexistent/model.safetensors") != std::string::npos);
}

TEST_CASE("FP8: E4M3 and E5M2 decode as the OCP formats; encoding rounds to nearest even",
          "[engine][safetensors]") {
  CHECK(Fp8E4M3ToFloat(0x38) == 1.0f);
  CHECK(Fp8E4M3ToFloat(0xB8) == -1.0f);
  CHECK(Fp8E4M3ToFloat(0x7E) == 448.0f);           // The largest finite value.
  CHECK(Fp8E4M3ToFloat(0x01) == 1.0f / 512.0f);    // The smallest subnormal, 2^-9.
  CHECK(Fp8E4M3ToFloat(0x08) == 1.0f / 64.0f);     // The smallest normal, 2^-6.
  CHECK(std::isnan(Fp8E4M3ToFloat(0x7F)));
  CHECK(std::isnan(Fp8E4M3ToFloat(0xFF)));
  CHECK(Fp8E5M2ToFloat(0x3C) == 1.0f);
  CHECK(Fp8E5M2ToFloat(0x7B) == 57344.0f);
  // Every finite code encodes back to itself (the two zeros included).
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7F) == 0x7F) continue;
    INFO("code " << code);
    CHECK(FloatToFp8E4M3(Fp8E4M3ToFloat(static_cast<uint8_t>(code))) == code);
  }
  CHECK(FloatToFp8E4M3(1.0625f) == 0x38);   // Halfway between 1 and 1.125: the even 1.
  CHECK(FloatToFp8E4M3(1.1875f) == 0x3A);   // Halfway between 1.125 and 1.25: the even 1.25.
  CHECK(FloatToFp8E4M3(1.07f) == 0x39);     // Nearer to 1.125.
  CHECK(FloatToFp8E4M3(-3000.0f) == 0xFE);  // Saturates to -448.
  CHECK(FloatToFp8E4M3(1e-6f) == 0x00);
}

}  // namespace
}  // namespace tessera::engine
