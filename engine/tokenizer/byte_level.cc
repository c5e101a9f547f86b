#include "engine/tokenizer/byte_level.h"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/tokenizer/utf8.h"

namespace tessera::engine::tokenizer_internal {
namespace {

bool MapsToItself(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

constexpr uint32_t kFirstShifted = 0x100;
constexpr int kShiftedCount = 68;  // 256 minus the bytes that map to themselves.

struct Tables {
  std::array<uint32_t, 256> byte_to_cpt;
  std::array<int16_t, kFirstShifted + kShiftedCount> cpt_to_byte;
};

const Tables& GetTables() {
  static const Tables tables = [] {
    Tables t;
    t.cpt_to_byte.fill(-1);
    uint32_t next = kFirstShifted;
    for (int b = 0; b < 256; ++b) {
      t.byte_to_cpt[b] = MapsToItself(b) ? static_cast<uint32_t>(b) : next++;
      t.cpt_to_byte[t.byte_to_cpt[b]] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return tables;
}

}  // namespace

uint32_t ByteToCodepoint(uint8_t b) { return GetTables().byte_to_cpt[b]; }

int CodepointToByte(uint32_t cpt) {
  const Tables& t = GetTables();
  return cpt < t.cpt_to_byte.size() ? t.cpt_to_byte[cpt] : -1;
}

std::string EncodeByteLevel(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendUtf8(ByteToCodepoint(static_cast<uint8_t>(c)), &out);
  return out;
}

std::string DecodeByteLevel(absl::string_view text) {
  std::vector<uint32_t> cpts;
  DecodeUtf8Lenient(text, &cpts);
  std::string out;
  out.reserve(cpts.size());
  for (uint32_t cpt : cpts) {
    const int b = CodepointToByte(cpt);
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
      continue;
    }
    std::string utf8;
    AppendUtf8(cpt, &utf8);
    out += "[UNK_BYTE_0x";
    for (char c : utf8) out += absl::StrFormat("%02x", static_cast<uint8_t>(c));
    out.append(text.data(), text.size());
    out += "]";
  }
  return out;
}

}  // namespace tessera::engine::tokenizer_internal
