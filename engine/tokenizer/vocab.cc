#include "engine/tokenizer/vocab.h"

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/utf8.h"

namespace tessera::engine::tokenizer_internal {
namespace {

constexpr absl::string_view kTokensKey = "tokenizer.ggml.tokens";
constexpr absl::string_view kTokenTypeKey = "tokenizer.ggml.token_type";
constexpr absl::string_view kMergesKey = "tokenizer.ggml.merges";

// llama.cpp's default BOS and EOS ids for "gpt2" vocabularies that do not name them.
constexpr int32_t kGpt2DefaultSpecialId = 11;

// Token texts llama.cpp treats as ending generation (llama_vocab::impl::load, which decides by
// text because converters do not record it). Such tokens are control tokens whatever their
// declared type.
constexpr absl::string_view kEndOfGenerationTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
};

// Fill-in-the-middle tokens llama.cpp finds by text when the file has no id for them. The
// pad, repo and file-separator ones also end generation; all are control tokens.
constexpr absl::string_view kFimPrefixTexts[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
    "<|code_prefix|>", "<|prefix|>"};
constexpr absl::string_view kFimSuffixTexts[] = {
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
    "<|code_suffix|>", "<|suffix|>"};
constexpr absl::string_view kFimMiddleTexts[] = {
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
    "<|code_middle|>", "<|middle|>"};
constexpr absl::string_view kFimPadTexts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                                              "[PAD]"};
constexpr absl::string_view kFimRepoTexts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                               "<REPO>", "<reponame>"};
constexpr absl::string_view kFimSeparatorTexts[] = {"<|file_sep|>"};

TokenType ToTokenType(int64_t value) {
  if (value < 0 || value > static_cast<int64_t>(TokenType::kByte)) return TokenType::kUndefined;
  return static_cast<TokenType>(value);
}

template <size_t N>
bool IsOneOf(absl::string_view text, const absl::string_view (&list)[N]) {
  return std::find(std::begin(list), std::end(list), text) != std::end(list);
}

uint64_t MergeKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
         static_cast<uint32_t>(right);
}

// "<0xAB>" spellings of byte tokens.
std::string ParseByteToken(absl::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return "";
  int value = 0;
  for (char c : text.substr(3, 2)) {
    const int digit = (c >= '0' && c <= '9')   ? c - '0'
                      : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                      : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                               : -1;
    if (digit < 0) return "";
    value = value * 16 + digit;
  }
  return std::string(1, static_cast<char>(value));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Vocab>> Vocab::FromGguf(const GgufFile& file) {
  std::unique_ptr<Vocab> vocab(new Vocab());
  TESSERA_RETURN_IF_ERROR(vocab->LoadTokens(file));
  TESSERA_RETURN_IF_ERROR(vocab->LoadMerges(file));
  TESSERA_RETURN_IF_ERROR(vocab->LoadSpecialIds(file));
  vocab->FindEndOfGeneration(file);
  vocab->BuildDerivedTables();
  return vocab;
}

absl::StatusOr<std::unique_ptr<Vocab>> Vocab::FromParts(Parts parts) {
  const size_t n = parts.texts.size();
  if (n == 0 || n >= static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat("the vocabulary has ", n, " tokens"));
  }
  if (parts.types.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("the vocabulary has ", n, " tokens but ",
                                                   parts.types.size(), " token types"));
  }
  std::unique_ptr<Vocab> vocab(new Vocab());
  vocab->texts_ = std::move(parts.texts);
  vocab->types_ = std::move(parts.types);
  vocab->IndexTexts();
  for (size_t i = 0; i < parts.merges.size(); ++i) {
    vocab->AddMerge(parts.merges[i].first, parts.merges[i].second, static_cast<int32_t>(i));
  }
  for (int32_t id : parts.end_of_generation) {
    if (!vocab->Contains(id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "end-of-generation token id ", id, " is outside the vocabulary of ", n, " tokens"));
    }
    vocab->end_of_generation_.insert(id);
  }
  for (int32_t id : {parts.bos_id, parts.eos_id}) {
    if (id != -1 && !vocab->Contains(id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("special token id ", id, " is outside the vocabulary of ", n, " tokens"));
    }
  }
  if (parts.add_bos && parts.bos_id < 0) {
    return absl::InvalidArgumentError("the tokenizer adds a BOS token but names none");
  }
  vocab->bos_id_ = parts.bos_id;
  vocab->eos_id_ = parts.eos_id;
  if (parts.eos_id >= 0) vocab->end_of_generation_.insert(parts.eos_id);
  vocab->add_bos_ = parts.add_bos;
  vocab->ignore_merges_ = parts.ignore_merges;
  vocab->BuildDerivedTables();
  return vocab;
}

std::optional<int32_t> Vocab::Find(absl::string_view text) const {
  auto it = ids_by_text_.find(text);
  if (it == ids_by_text_.end()) return std::nullopt;
  return it->second;
}

const Vocab::Merge* Vocab::FindMerge(int32_t left, int32_t right) const {
  auto it = merges_.find(MergeKey(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

absl::Status Vocab::LoadTokens(const GgufFile& file) {
  TESSERA_ASSIGN_OR_RETURN(std::span<const std::string> tokens,
                           file.GetStringArray(kTokensKey));
  if (tokens.empty() || tokens.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat(kTokensKey, " has ", tokens.size(), " entries"));
  }
  texts_.assign(tokens.begin(), tokens.end());
  types_.assign(texts_.size(), TokenType::kNormal);
  if (file.Has(kTokenTypeKey)) {
    TESSERA_ASSIGN_OR_RETURN(std::span<const int64_t> types, file.GetIntArray(kTokenTypeKey));
    if (types.size() != texts_.size()) {
      return absl::InvalidArgumentError(absl::StrCat(kTokenTypeKey, " has ", types.size(),
                                                     " entries but ", kTokensKey, " has ",
                                                     texts_.size()));
    }
    for (size_t i = 0; i < types.size(); ++i) types_[i] = ToTokenType(types[i]);
  }
  IndexTexts();
  return absl::OkStatus();
}

void Vocab::IndexTexts() {
  ids_by_text_.reserve(texts_.size());
  for (size_t i = 0; i < texts_.size(); ++i) {
    ids_by_text_[absl::string_view(texts_[i])] = static_cast<int32_t>(i);
  }
}

void Vocab::AddMerge(absl::string_view left, absl::string_view right, int32_t rank) {
  const std::optional<int32_t> left_id = Find(left);
  const std::optional<int32_t> right_id = Find(right);
  // A merge of something that is not a token can never apply to symbols built from
  // tokens, which is all BPE here starts from and produces in well-formed vocabularies.
  if (!left_id.has_value() || !right_id.has_value()) return;
  const int32_t result = Find(absl::StrCat(left, right)).value_or(-1);
  merges_.try_emplace(MergeKey(*left_id, *right_id), Merge{rank, result});
}

absl::Status Vocab::LoadMerges(const GgufFile& file) {
  TESSERA_ASSIGN_OR_RETURN(std::span<const std::string> merges, file.GetStringArray(kMergesKey));
  merges_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    absl::string_view merge = merges[i];
    // Split at the first space after the first character, as llama.cpp does.
    const size_t space = merge.find(' ', 1);
    if (space == absl::string_view::npos) continue;
    AddMerge(merge.substr(0, space), merge.substr(space + 1), static_cast<int32_t>(i));
  }
  return absl::OkStatus();
}

absl::Status Vocab::LoadSpecialIds(const GgufFile& file) {
  auto read_id = [&](absl::string_view key, int32_t fallback) -> absl::StatusOr<int32_t> {
    if (!file.Has(key)) return fallback;
    TESSERA_ASSIGN_OR_RETURN(int64_t id, file.GetInt(key));
    if (id < 0 || id >= size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, " is ", id, ", outside the vocabulary of ", size(), " tokens"));
    }
    return static_cast<int32_t>(id);
  };
  TESSERA_ASSIGN_OR_RETURN(bos_id_, read_id("tokenizer.ggml.bos_token_id", kGpt2DefaultSpecialId));
  TESSERA_ASSIGN_OR_RETURN(eos_id_, read_id("tokenizer.ggml.eos_token_id", kGpt2DefaultSpecialId));
  if (!Contains(bos_id_) || !Contains(eos_id_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the vocabulary of ", size(), " tokens is too small for the default BOS/EOS id ",
        kGpt2DefaultSpecialId));
  }
  if (file.Has("tokenizer.ggml.add_bos_token")) {
    TESSERA_ASSIGN_OR_RETURN(add_bos_, file.GetBool("tokenizer.ggml.add_bos_token"));
  }
  return absl::OkStatus();
}

void Vocab::FindEndOfGeneration(const GgufFile& file) {
  // An id from the file wins; otherwise the first token (by id) spelled as in `texts`.
  auto find_id = [&](absl::string_view key, auto& texts) -> int32_t {
    if (file.Has(key)) {
      absl::StatusOr<int64_t> id = file.GetInt(key);
      if (id.ok() && *id >= 0 && *id < size()) return static_cast<int32_t>(*id);
    }
    for (int32_t id = 0; id < size(); ++id) {
      if (IsOneOf(texts_[id], texts)) return id;
    }
    return -1;
  };
  const int32_t fim_pad = find_id("tokenizer.ggml.fim_pad_token_id", kFimPadTexts);
  const int32_t fim_repo = find_id("tokenizer.ggml.fim_rep_token_id", kFimRepoTexts);
  const int32_t fim_separator = find_id("tokenizer.ggml.fim_sep_token_id", kFimSeparatorTexts);
  for (int32_t id : {fim_pad, fim_repo, fim_separator}) {
    if (id >= 0) end_of_generation_.insert(id);
  }
  for (int32_t id = 0; id < size(); ++id) {
    const absl::string_view text = texts_[id];
    if (IsOneOf(text, kEndOfGenerationTexts)) end_of_generation_.insert(id);
    if (IsOneOf(text, kEndOfGenerationTexts) || IsOneOf(text, kFimPrefixTexts) ||
        IsOneOf(text, kFimSuffixTexts) || IsOneOf(text, kFimMiddleTexts) ||
        IsOneOf(text, kFimPadTexts) || IsOneOf(text, kFimRepoTexts) ||
        IsOneOf(text, kFimSeparatorTexts)) {
      types_[id] = TokenType::kControl;
    }
  }
  end_of_generation_.insert(eos_id_);
  for (absl::string_view key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (!file.Has(key)) continue;
    absl::StatusOr<int64_t> id = file.GetInt(key);
    if (id.ok() && *id >= 0 && *id < size()) end_of_generation_.insert(static_cast<int32_t>(*id));
  }
}

void Vocab::BuildDerivedTables() {
  pieces_.resize(texts_.size());
  for (int32_t id = 0; id < size(); ++id) {
    switch (types_[id]) {
      case TokenType::kNormal:
        pieces_[id] = DecodeByteLevel(texts_[id]);
        break;
      case TokenType::kControl:
      case TokenType::kUnknown:
      case TokenType::kUserDefined:
        pieces_[id] = texts_[id];
        split_tokens_.push_back(id);
        break;
      case TokenType::kByte:
        pieces_[id] = ParseByteToken(texts_[id]);
        break;
      case TokenType::kUnused:
      case TokenType::kUndefined:
        break;
    }
  }
  // An empty text would match everywhere; llama.cpp would loop on it.
  std::erase_if(split_tokens_, [&](int32_t id) { return texts_[id].empty(); });
  std::stable_sort(split_tokens_.begin(), split_tokens_.end(), [&](int32_t a, int32_t b) {
    return texts_[a].size() > texts_[b].size();
  });

  for (int b = 0; b < 256; ++b) {
    std::string spelled;
    AppendUtf8(ByteToCodepoint(static_cast<uint8_t>(b)), &spelled);
    byte_tokens_[b] = Find(spelled).value_or(-1);
    for (char c : spelled) {
      if (std::optional<int32_t> id = Find(absl::string_view(&c, 1))) {
        byte_fallback_[b].push_back(*id);
      }
    }
  }
}

}  // namespace tessera::engine::tokenizer_internal
