// Encoding follows llama.cpp's llama_vocab::impl::tokenize for BPE vocabularies: split the
// special tokens out of the raw text, pre-tokenize each remaining piece on its own, run BPE
// within each word.
#include "engine/tokenizer/tokenizer.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/vocab.h"

namespace tessera::engine {
namespace {

using tokenizer_internal::TokenType;
using tokenizer_internal::Vocab;

constexpr absl::string_view kModelKey = "tokenizer.ggml.model";
constexpr absl::string_view kPreKey = "tokenizer.ggml.pre";
constexpr absl::string_view kChatTemplateKey = "tokenizer.chat_template";

// A piece of the input: raw text (token < 0) or a special token matched in it.
struct Fragment {
  int32_t token;
  size_t begin;
  size_t end;
};

// llama.cpp's tokenizer_st_partition: for each special token in turn, longest first, every
// occurrence in the raw pieces left so far (leftmost first, not overlapping) becomes that
// token. Control and unknown tokens take part only with `parse_special`.
std::vector<Fragment> SplitSpecialTokens(const Vocab& vocab, absl::string_view text,
                                         bool parse_special) {
  std::vector<Fragment> fragments = {Fragment{-1, 0, text.size()}};
  std::vector<Fragment> next;
  for (int32_t id : vocab.split_tokens()) {
    const TokenType type = vocab.type(id);
    if (!parse_special && (type == TokenType::kControl || type == TokenType::kUnknown)) {
      continue;
    }
    const absl::string_view spelled = vocab.text(id);
    next.clear();
    for (const Fragment& fragment : fragments) {
      if (fragment.token >= 0) {
        next.push_back(fragment);
        continue;
      }
      const absl::string_view piece = text.substr(0, fragment.end);
      size_t pos = fragment.begin;
      for (size_t match = piece.find(spelled, pos); match != absl::string_view::npos;
           match = piece.find(spelled, pos)) {
        if (match > pos) next.push_back(Fragment{-1, pos, match});
        next.push_back(Fragment{id, match, match + spelled.size()});
        pos = match + spelled.size();
      }
      if (pos < fragment.end) next.push_back(Fragment{-1, pos, fragment.end});
    }
    fragments.swap(next);
  }
  return fragments;
}

absl::Status CheckSupported(const GgufFile& file) {
  if (!file.Has(kModelKey)) {
    return absl::InvalidArgumentError(absl::StrCat(file.source_name(), " has no ", kModelKey));
  }
  TESSERA_ASSIGN_OR_RETURN(std::string model, file.GetString(kModelKey));
  if (model != "gpt2") {
    return absl::InvalidArgumentError(absl::StrCat(
        file.source_name(), ": ", kModelKey, " '", model,
        "' is not supported (supported: 'gpt2', byte-level BPE)"));
  }
  if (!file.Has(kPreKey)) {
    return absl::InvalidArgumentError(absl::StrCat(
        file.source_name(), " has no ", kPreKey, " (supported: 'smollm')"));
  }
  TESSERA_ASSIGN_OR_RETURN(std::string pre, file.GetString(kPreKey));
  if (pre != "smollm") {
    return absl::InvalidArgumentError(absl::StrCat(file.source_name(), ": ", kPreKey, " '", pre,
                                                   "' is not supported (supported: 'smollm')"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& file) {
  TESSERA_RETURN_IF_ERROR(CheckSupported(file));
  absl::StatusOr<std::unique_ptr<Vocab>> vocab = Vocab::FromGguf(file);
  if (!vocab.ok()) {
    return absl::Status(vocab.status().code(),
                        absl::StrCat("loading the tokenizer of ", file.source_name(), ": ",
                                     vocab.status().message()));
  }
  std::string chat_template;
  if (file.Has(kChatTemplateKey)) {
    TESSERA_ASSIGN_OR_RETURN(chat_template, file.GetString(kChatTemplateKey));
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(
      *std::move(vocab), tokenizer_internal::MakeSmolLmPreTokenizer(), std::move(chat_template)));
}

Tokenizer::Tokenizer(std::unique_ptr<const Vocab> vocab,
                     std::unique_ptr<const tokenizer_internal::PreTokenizer> pre_tokenizer,
                     std::string chat_template)
    : vocab_(std::move(vocab)),
      pre_tokenizer_(std::move(pre_tokenizer)),
      chat_template_(std::move(chat_template)) {}
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::Encode(absl::string_view text, bool parse_special) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  if (vocab_->add_bos()) ids.push_back(vocab_->bos_id());
  if (text.empty()) return ids;
  for (const Fragment& fragment : SplitSpecialTokens(*vocab_, text, parse_special)) {
    if (fragment.token >= 0) {
      ids.push_back(fragment.token);
    } else {
      EncodeText(text.substr(fragment.begin, fragment.end - fragment.begin), &ids);
    }
  }
  return ids;
}

void Tokenizer::EncodeText(absl::string_view text, std::vector<int32_t>* out) const {
  std::string normalized;
  std::vector<tokenizer_internal::WordSpan> words;
  pre_tokenizer_->Split(text, &normalized, &words);
  tokenizer_internal::BpeWordEncoder encoder(*vocab_);
  const absl::string_view all(normalized);
  for (const tokenizer_internal::WordSpan& word : words) {
    const absl::string_view bytes = all.substr(word.offset, word.length);
    if (vocab_->ignore_merges()) {
      if (std::optional<int32_t> id = vocab_->Find(tokenizer_internal::EncodeByteLevel(bytes))) {
        out->push_back(*id);
        continue;
      }
    }
    encoder.Encode(bytes, out);
  }
}

absl::StatusOr<std::string> Tokenizer::Decode(std::span<const int32_t> ids) const {
  size_t total = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!vocab_->Contains(ids[i])) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at index ", i,
                                                     " is outside the vocabulary [0, ",
                                                     vocab_->size(), ")"));
    }
    total += vocab_->piece(ids[i]).size();
  }
  std::string text;
  text.reserve(total);
  for (int32_t id : ids) {
    const absl::string_view piece = vocab_->piece(id);
    text.append(piece.data(), piece.size());
  }
  return text;
}

absl::StatusOr<std::string> Tokenizer::TokenBytes(int32_t id) const {
  if (!vocab_->Contains(id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token id ", id, " is outside the vocabulary [0, ", vocab_->size(), ")"));
  }
  return std::string(vocab_->piece(id));
}

int32_t Tokenizer::vocab_size() const { return vocab_->size(); }
int32_t Tokenizer::bos_id() const { return vocab_->bos_id(); }
int32_t Tokenizer::eos_id() const { return vocab_->eos_id(); }

bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  return vocab_->Contains(id) && vocab_->IsEndOfGeneration(id);
}

std::optional<int32_t> Tokenizer::FindToken(absl::string_view text) const {
  return vocab_->Find(text);
}

}  // namespace tessera::engine
