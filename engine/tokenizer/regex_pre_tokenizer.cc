#include "engine/tokenizer/regex_pre_tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"
#include "re2/re2.h"

namespace tessera::engine::tokenizer_internal {
namespace {

// Oniguruma's Unicode classes as RE2 class bodies: \s is White_Space (Z* plus \t-\r and
// U+0085), \d is Nd, \w is letters, marks, decimal digits and connector punctuation.
constexpr absl::string_view kSpaceBody = "\\t-\\r\\x{85}\\p{Z}";
constexpr absl::string_view kDigitBody = "\\p{Nd}";
constexpr absl::string_view kWordBody = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";
constexpr absl::string_view kLookaheadTail = "\\s+(?!\\S)|\\s+";

// Copies an Oniguruma pattern into RE2 syntax, tracking character classes and group depth.
class Translator {
 public:
  explicit Translator(absl::string_view pattern) : pattern_(pattern) {}

  absl::Status Run() {
    for (size_t i = 0; i < pattern_.size(); ++i) {
      const char c = pattern_[i];
      if (c == '\\') {
        if (i + 1 == pattern_.size()) return Invalid("ends with a backslash");
        absl::Status s = Escape(pattern_[++i], &i);
        if (!s.ok()) return s;
        class_start_ = false;
        continue;
      }
      if (in_class_) {
        if (c == '[') return Unsupported("a nested character class");
        if (c == ']' && !class_start_) in_class_ = false;
        class_start_ = class_start_ && c == '^' && pattern_[i - 1] == '[';
        out_.push_back(c);
        continue;
      }
      if (c == '^' || c == '$') {
        // Oniguruma's (Ruby's) ^ and $ always match at line boundaries.
        absl::StrAppend(&out_, "(?m:", std::string(1, c), ")");
        continue;
      }
      if (c == '[') {
        in_class_ = true;
        class_start_ = true;
      } else if (c == '(') {
        const absl::string_view rest = pattern_.substr(i);
        for (absl::string_view look : {"(?=", "(?!", "(?<=", "(?<!", "(?>"}) {
          if (absl::StartsWith(rest, look)) {
            return Unsupported(absl::StrCat("the lookaround or atomic group '", look, "'"));
          }
        }
        ++depth_;
        if (absl::StartsWith(rest, "(?")) {
          absl::Status s = Group(&i);
          if (!s.ok()) return s;
          continue;
        }
      } else if (c == ')') {
        if (--depth_ < 0) return Invalid("has an unmatched ')'");
      }
      out_.push_back(c);
    }
    if (in_class_) return Invalid("has an unterminated character class");
    if (depth_ != 0) return Invalid("has an unmatched '('");
    return absl::OkStatus();
  }

  std::string& out() { return out_; }

 private:
  // A group opening "(?..." at pattern_[*i]: non-capturing, named, or with flags. Oniguruma's
  // (Ruby's) m flag is RE2's s (dot matches newline); i is the same in both.
  absl::Status Group(size_t* i) {
    size_t k = *i + 2;
    if (k < pattern_.size() && pattern_[k] == '<') {  // (?<name>...): RE2 spells it (?P<name>.
      out_.append("(?P<");
      *i = k;
      return absl::OkStatus();
    }
    std::string flags;
    for (; k < pattern_.size() && pattern_[k] != ':' && pattern_[k] != ')'; ++k) {
      const char f = pattern_[k];
      if (f == 'i' || f == '-') {
        flags.push_back(f);
      } else if (f == 'm') {
        flags.push_back('s');
      } else {
        return Unsupported(absl::StrCat("the group flag '", std::string(1, f), "'"));
      }
    }
    if (k == pattern_.size()) return Invalid("has an unterminated group");
    if (pattern_[k] == ')') --depth_;  // "(?i)": flags for the rest, not a group.
    absl::StrAppend(&out_, "(?", flags, std::string(1, pattern_[k]));
    *i = k;
    return absl::OkStatus();
  }

  absl::Status Escape(char e, size_t* i) {
    auto unicode_class = [&](absl::string_view body, bool negated) -> absl::Status {
      if (in_class_) {
        if (negated) return Unsupported(absl::StrCat("\\", std::string(1, e), " inside []"));
        absl::StrAppend(&out_, body);
      } else {
        absl::StrAppend(&out_, negated ? "[^" : "[", body, "]");
      }
      return absl::OkStatus();
    };
    switch (e) {
      case 's':
        return unicode_class(kSpaceBody, false);
      case 'S':
        return unicode_class(kSpaceBody, true);
      case 'd':
        return unicode_class(kDigitBody, false);
      case 'D':
        return unicode_class(kDigitBody, true);
      case 'w':
        return unicode_class(kWordBody, false);
      case 'W':
        return unicode_class(kWordBody, true);
      case 'u': {  // \uHHHH
        const absl::string_view hex = pattern_.substr(*i + 1, 4);
        if (hex.size() != 4 || !std::all_of(hex.begin(), hex.end(), absl::ascii_isxdigit)) {
          return Invalid("has a malformed \\u escape");
        }
        absl::StrAppend(&out_, "\\x{", hex, "}");
        *i += 4;
        return absl::OkStatus();
      }
      case 'n':
      case 'r':
      case 't':
      case 'f':
      case 'v':
      case 'a':
      case 'x':
      case 'p':
      case 'P':
      case 'A':
      case 'z':
        out_.push_back('\\');
        out_.push_back(e);
        return absl::OkStatus();
      default:
        if (absl::ascii_isalnum(static_cast<unsigned char>(e))) {
          return Unsupported(absl::StrCat("the escape \\", std::string(1, e)));
        }
        out_.push_back('\\');  // An escaped punctuation character: itself.
        out_.push_back(e);
        return absl::OkStatus();
    }
  }

  absl::Status Invalid(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("pattern \"", pattern_, "\" ", what));
  }
  absl::Status Unsupported(absl::string_view what) const {
    return absl::UnimplementedError(
        absl::StrCat("pattern \"", pattern_, "\" uses ", what, ", which is not supported"));
  }

  const absl::string_view pattern_;
  std::string out_;
  bool in_class_ = false;
  bool class_start_ = false;  // Just after '[' or "[^": a ']' here is a literal.
  int depth_ = 0;
};

// Whether the alternatives before a `\s+(?!\S)|\s+` tail leave it at the top level.
bool EndsAtTopLevelAlternative(absl::string_view prefix) {
  if (prefix.empty()) return true;
  if (prefix.back() != '|') return false;
  size_t backslashes = 0;
  for (size_t i = prefix.size() - 1; i > 0 && prefix[i - 1] == '\\'; --i) ++backslashes;
  if (backslashes % 2 != 0) return false;
  Translator check(prefix.substr(0, prefix.size() - 1));
  return check.Run().ok();
}

// The codepoint starting at byte `at` of valid UTF-8 `text`.
uint32_t CodepointAt(absl::string_view text, size_t at) {
  utf8proc_int32_t cpt = 0;
  utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + at),
                   static_cast<utf8proc_ssize_t>(text.size() - at), &cpt);
  return cpt < 0 ? kReplacementCharacter : static_cast<uint32_t>(cpt);
}

size_t NextCodepoint(absl::string_view text, size_t at) {
  ++at;
  while (at < text.size() && (static_cast<uint8_t>(text[at]) & 0xC0) == 0x80) ++at;
  return at;
}

bool IsWhitespaceRun(absl::string_view text, size_t begin, size_t end) {
  for (size_t at = begin; at < end; at = NextCodepoint(text, at)) {
    if (!IsOnigWhitespace(CodepointAt(text, at))) return false;
  }
  return true;
}

size_t PreviousCodepoint(absl::string_view text, size_t at) {
  --at;
  while (at > 0 && (static_cast<uint8_t>(text[at]) & 0xC0) == 0x80) --at;
  return at;
}

}  // namespace

bool IsOnigWhitespace(uint32_t cpt) {
  return (cpt >= 0x09 && cpt <= 0x0D) || cpt == 0x20 || cpt == 0x85 || cpt == 0xA0 ||
         cpt == 0x1680 || (cpt >= 0x2000 && cpt <= 0x200A) || cpt == 0x2028 || cpt == 0x2029 ||
         cpt == 0x202F || cpt == 0x205F || cpt == 0x3000;
}

absl::StatusOr<TranslatedPattern> TranslateOnigPattern(absl::string_view pattern) {
  TranslatedPattern result;
  absl::string_view body = pattern;
  if (absl::EndsWith(pattern, kLookaheadTail)) {
    const absl::string_view prefix = pattern.substr(0, pattern.size() - kLookaheadTail.size());
    if (EndsAtTopLevelAlternative(prefix)) {
      body = prefix;
      result.whitespace_lookahead = true;
    }
  }
  Translator translator(body);
  if (absl::Status s = translator.Run(); !s.ok()) {
    // Name the whole pattern, not the part before the tail.
    return absl::Status(s.code(), absl::StrCat(s.message(), " (in \"", pattern, "\")"));
  }
  result.re2 = std::move(translator.out());
  if (result.whitespace_lookahead) absl::StrAppend(&result.re2, "([", kSpaceBody, "]+)");
  return result;
}

absl::StatusOr<std::unique_ptr<RegexPreTokenizer>> RegexPreTokenizer::Create(
    const std::vector<std::string>& patterns, bool nfc) {
  std::vector<Step> steps;
  for (const std::string& pattern : patterns) {
    absl::StatusOr<TranslatedPattern> translated = TranslateOnigPattern(pattern);
    if (!translated.ok()) return translated.status();
    RE2::Options options;
    options.set_encoding(RE2::Options::EncodingUTF8);
    options.set_log_errors(false);
    auto regex = std::make_unique<RE2>(translated->re2, options);
    if (!regex->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("pattern \"", pattern, "\": ", regex->error()));
    }
    steps.push_back(Step{std::move(regex), translated->whitespace_lookahead});
  }
  return std::unique_ptr<RegexPreTokenizer>(new RegexPreTokenizer(std::move(steps), nfc));
}

RegexPreTokenizer::RegexPreTokenizer(std::vector<Step> steps, bool nfc)
    : steps_(std::move(steps)), nfc_(nfc) {}
RegexPreTokenizer::~RegexPreTokenizer() = default;

void RegexPreTokenizer::Split(absl::string_view text, std::string* normalized,
                              std::vector<WordSpan>* words) const {
  normalized->clear();
  words->clear();
  // Invalid bytes become U+FFFD first, as the GGUF path does: the regexes and NFC need UTF-8.
  std::vector<uint32_t> cpts;
  bool intact = DecodeUtf8Lenient(text, &cpts);
  for (uint32_t& cpt : cpts) {
    // Encoded surrogates get through the lenient decoder; they are not text (a Rust string,
    // all `tokenizers` sees, cannot hold them) and would make NFC refuse the whole input.
    if ((cpt >= 0xD800 && cpt <= 0xDFFF) || cpt > 0x10FFFF) {
      cpt = kReplacementCharacter;
      intact = false;
    }
  }
  if (intact) {
    normalized->assign(text.data(), text.size());
  } else {
    for (uint32_t cpt : cpts) AppendUtf8(cpt, normalized);
  }
  // ASCII is its own NFC form, and most text is ASCII.
  const bool ascii = std::all_of(normalized->begin(), normalized->end(),
                                 [](char c) { return static_cast<uint8_t>(c) < 0x80; });
  if (nfc_ && !ascii) {
    utf8proc_uint8_t* composed = nullptr;
    const utf8proc_ssize_t length =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(normalized->data()),
                     static_cast<utf8proc_ssize_t>(normalized->size()), &composed,
                     static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (length >= 0) normalized->assign(reinterpret_cast<const char*>(composed), length);
    std::free(composed);
  }
  if (normalized->empty()) return;
  words->push_back(WordSpan{0, static_cast<uint32_t>(normalized->size())});
  std::vector<WordSpan> next;
  for (const Step& step : steps_) {
    next.clear();
    for (const WordSpan& piece : *words) SplitPiece(step, *normalized, piece, &next);
    words->swap(next);
  }
}

bool RegexPreTokenizer::MatchedByTail(const Step& step, const re2::StringPiece& subject,
                                      size_t begin) const {
  const int groups = step.regex->NumberOfCapturingGroups();
  std::vector<re2::StringPiece> match(static_cast<size_t>(groups) + 1);
  return step.regex->Match(subject, begin, subject.size(), RE2::ANCHOR_START, match.data(),
                           groups + 1) &&
         match[groups].data() != nullptr;
}

void RegexPreTokenizer::SplitPiece(const Step& step, absl::string_view normalized,
                                   const WordSpan& piece, std::vector<WordSpan>* out) const {
  // Each piece is matched as a string of its own: nothing outside it is seen.
  const absl::string_view text = normalized.substr(piece.offset, piece.length);
  // Debian's RE2 predates its absl::string_view interface.
  const re2::StringPiece subject(text.data(), text.size());
  re2::StringPiece match;
  auto emit = [&](size_t begin, size_t end) {
    if (end > begin) {
      out->push_back(WordSpan{piece.offset + static_cast<uint32_t>(begin),
                              static_cast<uint32_t>(end - begin)});
    }
  };
  size_t gap = 0;     // Start of the text not yet emitted.
  size_t search = 0;  // Where the next match may start.
  // Asking only for the whole match lets RE2 use its DFA; the lookahead tail's group is
  // consulted only for the rare match that could need it.
  while (search < text.size() &&
         step.regex->Match(subject, search, text.size(), RE2::UNANCHORED, &match, 1)) {
    const size_t begin = static_cast<size_t>(match.data() - text.data());
    size_t end = begin + match.size();
    if (end == begin) {  // An empty match splits nothing; look further on.
      search = NextCodepoint(text, begin);
      continue;
    }
    if (step.whitespace_lookahead && end < text.size() &&
        !IsOnigWhitespace(CodepointAt(text, end)) && IsWhitespaceRun(text, begin, end) &&
        PreviousCodepoint(text, end) > begin && MatchedByTail(step, subject, begin)) {
      // \s+(?!\S): a run of two or more that a non-space follows leaves its last codepoint.
      end = PreviousCodepoint(text, end);
    }
    emit(gap, begin);
    emit(begin, end);
    gap = search = end;
  }
  emit(gap, text.size());
}

}  // namespace tessera::engine::tokenizer_internal
