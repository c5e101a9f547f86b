#include "engine/tokenizer/pre_tokenizer.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/tokenizer/unicode_tables.h"
#include "engine/tokenizer/utf8.h"

namespace tessera::engine::tokenizer_internal {
namespace {

using Class = CodepointClass;

// Splits one piece of text that holds no number codepoints with the GPT-2 pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Positions are codepoint indices; the piece is [begin, end) and nothing outside it is seen,
// exactly as llama.cpp's custom GPT-2 splitter treats each piece the \p{N} split produced.
class Gpt2Splitter {
 public:
  Gpt2Splitter(const std::vector<uint32_t>& cpts, const std::vector<Class>& classes,
               const std::vector<uint32_t>& byte_offsets, std::vector<WordSpan>* words)
      : cpts_(cpts), classes_(classes), byte_offsets_(byte_offsets), words_(words) {}

  void Split(size_t begin, size_t end) {
    size_t pos = begin;
    while (pos < end) {
      pos = NextWordEnd(pos, end);
    }
  }

 private:
  // Emits the word starting at `pos` and returns where it ends.
  size_t NextWordEnd(size_t pos, size_t end) {
    const uint32_t c = cpts_[pos];
    // 's|'t|'re|'ve|'m|'ll|'d (lower case only, as in GPT-2).
    if (c == '\'' && pos + 1 < end) {
      const uint32_t c1 = cpts_[pos + 1];
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return Emit(pos, pos + 2);
      if (pos + 2 < end) {
        const uint32_t c2 = cpts_[pos + 2];
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          return Emit(pos, pos + 3);
        }
      }
    }
    // ' ?\p{L}+', ' ?\p{N}+' and ' ?[^\s\p{L}\p{N}]+': an optional space, then a run of one
    // class. A space at the very end of the piece has no class after it.
    const size_t first = c == ' ' ? pos + 1 : pos;
    if (first < end) {
      const Class cls = classes_[first];
      if (cls != Class::kWhitespace) {
        size_t q = first + 1;
        while (q < end && classes_[q] == cls) ++q;
        return Emit(pos, q);
      }
    }
    // '\s+(?!\S)' then '\s+': a whitespace run that some other codepoint follows leaves its
    // last codepoint to start the next word (so " word" keeps its space).
    size_t w = pos;
    while (w < end && classes_[w] == Class::kWhitespace) ++w;
    const size_t count = w - pos;
    if (count > 1 && w < end) return Emit(pos, w - 1);
    if (count > 0) return Emit(pos, w);
    return Emit(pos, pos + 1);  // Not reached: every codepoint has a class.
  }

  size_t Emit(size_t begin, size_t end) {
    words_->push_back(
        WordSpan{byte_offsets_[begin], byte_offsets_[end] - byte_offsets_[begin]});
    return end;
  }

  const std::vector<uint32_t>& cpts_;
  const std::vector<Class>& classes_;
  const std::vector<uint32_t>& byte_offsets_;
  std::vector<WordSpan>* words_;
};

size_t Utf8Length(uint32_t cpt) {
  if (cpt < 0x80) return 1;
  if (cpt < 0x800) return 2;
  if (cpt < 0x10000) return 3;
  return 4;
}

}  // namespace

void PreTokenizeSmolLm(absl::string_view text, std::string* normalized,
                       std::vector<WordSpan>* words) {
  normalized->clear();
  words->clear();
  std::vector<uint32_t> cpts;
  cpts.reserve(text.size());
  if (DecodeUtf8Lenient(text, &cpts)) {
    normalized->assign(text.data(), text.size());
  } else {
    for (uint32_t cpt : cpts) AppendUtf8(cpt, normalized);
  }

  const size_t n = cpts.size();
  std::vector<Class> classes(n);
  std::vector<uint32_t> byte_offsets(n + 1);
  uint32_t offset = 0;
  for (size_t i = 0; i < n; ++i) {
    classes[i] = ClassifyCodepoint(cpts[i]);
    byte_offsets[i] = offset;
    offset += static_cast<uint32_t>(Utf8Length(cpts[i]));
  }
  byte_offsets[n] = offset;

  // First regex, \p{N}: each number codepoint is a word; the runs between them go on to the
  // GPT-2 pattern separately.
  Gpt2Splitter splitter(cpts, classes, byte_offsets, words);
  size_t i = 0;
  while (i < n) {
    if (classes[i] == Class::kNumber) {
      words->push_back(WordSpan{byte_offsets[i], byte_offsets[i + 1] - byte_offsets[i]});
      ++i;
      continue;
    }
    size_t run_end = i + 1;
    while (run_end < n && classes[run_end] != Class::kNumber) ++run_end;
    splitter.Split(i, run_end);
    i = run_end;
  }
}

namespace {

class SmolLmPreTokenizer final : public PreTokenizer {
 public:
  void Split(absl::string_view text, std::string* normalized,
             std::vector<WordSpan>* words) const override {
    PreTokenizeSmolLm(text, normalized, words);
  }
};

}  // namespace

std::unique_ptr<PreTokenizer> MakeSmolLmPreTokenizer() {
  return std::make_unique<SmolLmPreTokenizer>();
}

}  // namespace tessera::engine::tokenizer_internal
