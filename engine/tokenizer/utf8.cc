#include "engine/tokenizer/utf8.h"

#include <cstddef>
#include <cstdint>

namespace tessera::engine::tokenizer_internal {
namespace {

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Number of bytes AppendUtf8 writes for `cpt`.
size_t EncodedLength(uint32_t cpt) {
  if (cpt < 0x80) return 1;
  if (cpt < 0x800) return 2;
  if (cpt < 0x10000) return 3;
  return 4;
}

}  // namespace

void AppendUtf8(uint32_t cpt, std::string* out) {
  if (cpt < 0x80) {
    out->push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out->push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

bool DecodeUtf8Lenient(absl::string_view text, std::vector<uint32_t>* cpts) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  bool canonical = true;
  size_t i = 0;
  while (i < n) {
    const uint8_t b0 = p[i];
    if (b0 < 0x80) {
      cpts->push_back(b0);
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cpt = 0;
    if ((b0 & 0xE0) == 0xC0) {
      len = 2;
      cpt = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3;
      cpt = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4;
      cpt = b0 & 0x07;
    }
    bool ok = len != 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = IsContinuation(p[i + k]);
      cpt = (cpt << 6) | (p[i + k] & 0x3F);
    }
    if (!ok || cpt > 0x10FFFF) {
      cpts->push_back(kReplacementCharacter);
      canonical = false;
      ++i;
      continue;
    }
    if (EncodedLength(cpt) != len) canonical = false;  // An overlong form.
    cpts->push_back(cpt);
    i += len;
  }
  return canonical;
}

Utf8Scan ScanUtf8(absl::string_view bytes, size_t* length) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const uint8_t b0 = p[0];
  if (b0 < 0x80) {
    *length = 1;
    return Utf8Scan::kComplete;
  }
  // The allowed range of the second byte narrows for E0, ED, F0 and F4 (RFC 3629).
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *length = 1;
    return Utf8Scan::kInvalid;
  }
  for (size_t k = 1; k < len; ++k) {
    if (k >= bytes.size()) return Utf8Scan::kIncomplete;
    const uint8_t b = p[k];
    const bool fits = k == 1 ? (b >= lo && b <= hi) : IsContinuation(b);
    if (!fits) {
      *length = k;
      return Utf8Scan::kInvalid;
    }
  }
  *length = len;
  return Utf8Scan::kComplete;
}

bool IsValidUtf8(absl::string_view bytes) {
  while (!bytes.empty()) {
    size_t length = 0;
    if (ScanUtf8(bytes, &length) != Utf8Scan::kComplete) return false;
    bytes.remove_prefix(length);
  }
  return true;
}

}  // namespace tessera::engine::tokenizer_internal
