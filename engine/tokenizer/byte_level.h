// GPT-2's byte-level alphabet: each of the 256 byte values is given a printable codepoint, so
// that byte-level BPE vocabularies store arbitrary bytes as text ("Ġ" is the space byte).
// Printable Latin-1 bytes map to themselves; the other 68 map, in byte order, to U+0100
// onwards. Thread-safe (constant tables).
#ifndef TESSERA_ENGINE_TOKENIZER_BYTE_LEVEL_H_
#define TESSERA_ENGINE_TOKENIZER_BYTE_LEVEL_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace tessera::engine::tokenizer_internal {

// The codepoint that stands for byte `b`.
uint32_t ByteToCodepoint(uint8_t b);

// The byte that `cpt` stands for, or -1 when `cpt` is not in the alphabet.
int CodepointToByte(uint32_t cpt);

// The byte-level text of raw `bytes` (each byte becomes its codepoint, UTF-8 encoded).
std::string EncodeByteLevel(absl::string_view bytes);

// The raw bytes a vocabulary entry stands for. Matches llama.cpp's llama_decode_text, including
// its output for a codepoint outside the alphabet: "[UNK_BYTE_0x<hex of its UTF-8>" followed by
// the whole `text` and "]".
std::string DecodeByteLevel(absl::string_view text);

}  // namespace tessera::engine::tokenizer_internal

#endif  // TESSERA_ENGINE_TOKENIZER_BYTE_LEVEL_H_
