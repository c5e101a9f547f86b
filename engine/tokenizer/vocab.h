// The vocabulary of a byte-level BPE tokenizer as a GGUF file (or a tokenizer.json, through
// Parts) describes it: token texts and types, merge ranks, the special token ids and the
// end-of-generation set, plus tables derived from them (raw bytes per token, byte tokens,
// tokens split out of text before BPE).
// Thread-safe after FromGguf() or FromParts() returns (immutable).
#ifndef TESSERA_ENGINE_TOKENIZER_VOCAB_H_
#define TESSERA_ENGINE_TOKENIZER_VOCAB_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/gguf/gguf_file.h"

namespace tessera::engine::tokenizer_internal {

// tokenizer.ggml.token_type values.
enum class TokenType : uint8_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

class Vocab {
 public:
  struct Merge {
    int32_t rank;    // Position in tokenizer.ggml.merges; lower merges first.
    int32_t result;  // The token spelled left + right, or -1 when there is none.
  };

  // Reads tokenizer.ggml.{tokens,token_type,merges,bos_token_id,eos_token_id,add_bos_token}
  // and the optional eot/eom/fim ids. InvalidArgument names the key that is missing or wrong.
  static absl::StatusOr<std::unique_ptr<Vocab>> FromGguf(const GgufFile& file);

  // A vocabulary read from another format (hf_tokenizer.cc reads tokenizer.json).
  struct Parts {
    std::vector<std::string> texts;  // By id, normal tokens in byte-level form.
    std::vector<TokenType> types;    // By id.
    std::vector<std::pair<std::string, std::string>> merges;  // In rank order.
    int32_t bos_id = -1;  // -1: the vocabulary has none.
    int32_t eos_id = -1;
    bool add_bos = false;
    std::vector<int32_t> end_of_generation;  // Besides eos_id.
    // A word that is itself a token becomes that token without merging (Llama 3).
    bool ignore_merges = false;
  };
  // InvalidArgument names the first id out of range or the tables that disagree in size.
  static absl::StatusOr<std::unique_ptr<Vocab>> FromParts(Parts parts);

  Vocab(const Vocab&) = delete;
  Vocab& operator=(const Vocab&) = delete;

  int32_t size() const { return static_cast<int32_t>(texts_.size()); }
  bool Contains(int32_t id) const { return id >= 0 && id < size(); }

  // Preconditions for the accessors taking an id: Contains(id).
  TokenType type(int32_t id) const { return types_[id]; }
  // The token as the vocabulary spells it (byte-level form for normal tokens).
  absl::string_view text(int32_t id) const { return texts_[id]; }
  // The raw bytes the token decodes to: byte-level decoding for normal tokens, the text for
  // control, unknown and user-defined tokens, nothing for unused and undefined ones (as
  // llama.cpp's token_to_piece with special = true).
  absl::string_view piece(int32_t id) const { return pieces_[id]; }

  // The token spelled exactly `text` in vocabulary form (the last one if several are).
  std::optional<int32_t> Find(absl::string_view text) const;

  // The token standing for raw byte `b`, or -1; BPE starts from these.
  int32_t byte_token(uint8_t b) const { return byte_tokens_[b]; }
  // What llama.cpp emits for byte `b` of a BPE symbol that is not a token: the single-byte
  // tokens for each byte of b's byte-level spelling that exist (usually none).
  std::span<const int32_t> byte_fallback(uint8_t b) const { return byte_fallback_[b]; }

  // The merge of adjacent tokens `left` and `right`, or null.
  const Merge* FindMerge(int32_t left, int32_t right) const;

  // Tokens matched in raw text before pre-tokenizing (control, unknown and user-defined
  // ones with non-empty text), longest text first, ties by id.
  std::span<const int32_t> split_tokens() const { return split_tokens_; }

  bool IsEndOfGeneration(int32_t id) const { return end_of_generation_.contains(id); }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  bool add_bos() const { return add_bos_; }
  bool ignore_merges() const { return ignore_merges_; }

 private:
  Vocab() = default;
  absl::Status LoadTokens(const GgufFile& file);
  absl::Status LoadMerges(const GgufFile& file);
  absl::Status LoadSpecialIds(const GgufFile& file);
  void FindEndOfGeneration(const GgufFile& file);
  void BuildDerivedTables();
  void IndexTexts();
  void AddMerge(absl::string_view left, absl::string_view right, int32_t rank);

  std::vector<std::string> texts_;
  std::vector<TokenType> types_;
  std::vector<std::string> pieces_;
  absl::flat_hash_map<absl::string_view, int32_t> ids_by_text_;  // Views into texts_.
  absl::flat_hash_map<uint64_t, Merge> merges_;                 // Key: left << 32 | right.
  std::array<int32_t, 256> byte_tokens_{};
  std::array<std::vector<int32_t>, 256> byte_fallback_;
  std::vector<int32_t> split_tokens_;
  absl::flat_hash_set<int32_t> end_of_generation_;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool add_bos_ = false;
  bool ignore_merges_ = false;
};

}  // namespace tessera::engine::tokenizer_internal

#endif  // TESSERA_ENGINE_TOKENIZER_VOCAB_H_
