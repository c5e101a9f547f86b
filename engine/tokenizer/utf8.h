// UTF-8 helpers for the tokenizer: the lenient decoder llama.cpp applies to input text before
// pre-tokenizing (so that Tessera's token ids match its treatment of invalid input), and a
// strict RFC 3629 scanner used to stream detokenized text without emitting broken sequences.
// Thread-safe (stateless functions).
#ifndef TESSERA_ENGINE_TOKENIZER_UTF8_H_
#define TESSERA_ENGINE_TOKENIZER_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tessera::engine::tokenizer_internal {

inline constexpr uint32_t kReplacementCharacter = 0xFFFD;

// Appends the UTF-8 form of `cpt`, which must be at most 0x10FFFF. Surrogates are encoded
// like any other value (llama.cpp does the same).
void AppendUtf8(uint32_t cpt, std::string* out);

// Decodes `text` the way llama.cpp's unicode_cpts_from_utf8 does: a lead byte followed by
// the right number of continuation bytes decodes without checks for overlong forms or
// surrogates; anything else becomes U+FFFD and consumes one byte. Codepoints above 0x10FFFF
// (lead bytes F5..F7) are also replaced by U+FFFD consuming one byte: llama.cpp aborts on them.
// Appends the codepoints to `cpts`; returns true when AppendUtf8 of the codepoints reproduces
// `text` byte for byte (always the case for valid UTF-8).
bool DecodeUtf8Lenient(absl::string_view text, std::vector<uint32_t>* cpts);

// Strict decoding of the sequence at the start of `bytes` (which must not be empty).
enum class Utf8Scan {
  kComplete,    // A well-formed sequence of *length bytes.
  kIncomplete,  // All of `bytes` is a proper prefix of a well-formed sequence.
  kInvalid,     // Ill-formed; *length is its maximal subpart (at least 1 byte), which a
                // decoder replaces by one U+FFFD (Unicode's recommended practice).
};
Utf8Scan ScanUtf8(absl::string_view bytes, size_t* length);

// True when `bytes` is entirely well-formed UTF-8.
bool IsValidUtf8(absl::string_view bytes);

}  // namespace tessera::engine::tokenizer_internal

#endif  // TESSERA_ENGINE_TOKENIZER_UTF8_H_
