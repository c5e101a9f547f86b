// Tokenizers loaded from Hugging Face tokenizer.json files. The reference is the `tokenizers`
// library: tests/data/tokenizer/hf_styles.json holds, for the default model's vocabulary under
// four real pre-tokenizer configurations (SmolLM2, Qwen2/3, DeepSeek-V3, Llama 3), the ids it
// gives every text of the llama.cpp fixture (scripts/reference/make_hf_tokenizer_references.py).
// The vocabulary and merges are not committed twice: each test writes a tokenizer.json from the
// style's template and the GGUF's tokens.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/gguf/gguf_file.h"
#include "engine/tokenizer/regex_pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/engine/hf_checkpoint_from_gguf.h"
#include "tests/test_paths.h"

namespace tessera::engine {
namespace {

using json = nlohmann::json;

// A fresh directory under the temporary directory, removed at the end of the scope.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() /
              absl::StrCat("tessera-hf-tokenizer-", name, "-", ::getpid())) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string path() const { return path_.string(); }
  void Write(const std::string& file, const std::string& text) const {
    std::ofstream(path_ / file) << text;
  }

 private:
  std::filesystem::path path_;
};

// Whether `text` holds a letter of CJK Extension I (U+2EBF0..U+2EE5D), assigned in Unicode
// 15.1: Oniguruma in `tokenizers` knows it as \p{L}, Debian's RE2 tables (Unicode 15.0) do not,
// so the two split such text differently. One fixture text has one.
bool HasCodepointNewerThanRe2(const std::string& text) {
  for (size_t i = 0; i + 3 < text.size(); ++i) {
    const auto b = [&](size_t k) {
      return static_cast<uint32_t>(static_cast<uint8_t>(text[i + k]));
    };
    if (b(0) != 0xF0) continue;
    const uint32_t cpt = ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
    if (cpt >= 0x2EBF0 && cpt <= 0x2EE5D) return true;
  }
  return false;
}

const json& Styles() {
  static const json* styles = [] {
    std::ifstream in(testing::TestDataPath("tokenizer/hf_styles.json"));
    REQUIRE(in);
    return new json(json::parse(in));
  }();
  return *styles;
}

struct GgufVocabulary {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> gguf_tokenizer;
};

const GgufVocabulary& Vocabulary() {
  static const GgufVocabulary* vocabulary = [] {
    auto* v = new GgufVocabulary;
    absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(testing::DefaultModelPath());
    INFO("run scripts/fetch_model: " << file.status().ToString());
    REQUIRE(file.ok());
    v->file = *std::move(file);
    v->gguf_tokenizer = *Tokenizer::FromGguf(*v->file);
    return v;
  }();
  return *vocabulary;
}

// The style's tokenizer.json with the GGUF's vocabulary and merges put back.
json StyleTokenizerJson(const std::string& style) {
  absl::StatusOr<json> doc = testing::TokenizerJsonFromGguf(*Vocabulary().file, style);
  REQUIRE(doc.ok());
  return *std::move(doc);
}

std::unique_ptr<Tokenizer> LoadStyle(const TempDir& dir, const std::string& style) {
  dir.Write("tokenizer.json", StyleTokenizerJson(style).dump());
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromHuggingFace(dir.path());
  INFO(tokenizer.status().ToString());
  REQUIRE(tokenizer.ok());
  return *std::move(tokenizer);
}

TEST_CASE("tokenizer.json: every style encodes every fixture text as the tokenizers library does",
          "[engine][tokenizer][hf]") {
  const std::string style = GENERATE("smollm2", "qwen2", "deepseek_v3", "llama3");
  TempDir dir(style);
  std::unique_ptr<Tokenizer> tokenizer = LoadStyle(dir, style);
  const json& texts = Styles()["texts"];
  const json& expected = Styles()["styles"][style]["ids"];
  REQUIRE(texts.size() == expected.size());
  REQUIRE(texts.size() > 2000);
  int mismatches = 0;
  int newer_unicode = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string text = texts[i].get<std::string>();
    const std::vector<int32_t> ids = tokenizer->Encode(text, /*parse_special=*/true);
    if (ids == expected[i].get<std::vector<int32_t>>()) continue;
    if (HasCodepointNewerThanRe2(text)) {
      ++newer_unicode;
    } else if (++mismatches <= 5) {
      UNSCOPED_INFO(style << " text " << i << " " << json(text).dump() << ": got ["
                          << absl::StrJoin(ids, ",") << "], want " << expected[i].dump());
    }
  }
  CHECK(mismatches == 0);
  CHECK(newer_unicode <= 1);
}

TEST_CASE("tokenizer.json: the SmolLM2 style is the GGUF tokenizer, ids, specials and decoding",
          "[engine][tokenizer][hf]") {
  TempDir dir("smollm2-vs-gguf");
  std::unique_ptr<Tokenizer> from_json = LoadStyle(dir, "smollm2");
  const Tokenizer& from_gguf = *Vocabulary().gguf_tokenizer;
  CHECK(from_json->vocab_size() == from_gguf.vocab_size());
  int mismatches = 0;
  for (const json& text : Styles()["texts"]) {
    for (bool parse_special : {false, true}) {
      const std::vector<int32_t> a = from_json->Encode(text.get<std::string>(), parse_special);
      if (a != from_gguf.Encode(text.get<std::string>(), parse_special)) ++mismatches;
      CHECK(*from_json->Decode(a) == *from_gguf.Decode(a));
    }
  }
  CHECK(mismatches == 0);
  // Special tokens are single tokens only when asked for; decoding gives their text back.
  const std::vector<int32_t> special = from_json->Encode("<|im_start|>user", true);
  REQUIRE(special.size() == 2);
  CHECK(special[0] == *from_json->FindToken("<|im_start|>"));
  CHECK(from_json->Encode("<|im_start|>user", false).size() > 2);
  CHECK(*from_json->Decode(special) == "<|im_start|>user");
}

TEST_CASE("tokenizer.json: NFC normalization composes what the other styles leave decomposed",
          "[engine][tokenizer][hf]") {
  TempDir qwen_dir("nfc-qwen2");
  TempDir plain_dir("nfc-plain");
  std::unique_ptr<Tokenizer> qwen2 = LoadStyle(qwen_dir, "qwen2");
  std::unique_ptr<Tokenizer> plain = LoadStyle(plain_dir, "llama3");
  const std::string decomposed = "Cafe\xCC\x81";  // "Café" as e + U+0301.
  CHECK(*qwen2->Decode(qwen2->Encode(decomposed, true)) == "Caf\xC3\xA9");
  CHECK(*plain->Decode(plain->Encode(decomposed, true)) == decomposed);
  // An encoded surrogate (not text) becomes U+FFFD and does not stop NFC for the rest.
  CHECK(*qwen2->Decode(qwen2->Encode("\xED\xA0\x80" + decomposed, true)) ==
        "\xEF\xBF\xBD" "Caf\xC3\xA9");
}

TEST_CASE(
    "tokenizer.json: special ids, end of generation and the chat template come from the "
    "companion files",
    "[engine][tokenizer][hf]") {
  TempDir dir("companions");
  json doc = StyleTokenizerJson("qwen2");
  // A TemplateProcessing post-processor that prepends <|endoftext|>, as Llama 3's does.
  doc["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}}],
      "pair": [], "special_tokens": {}})");
  dir.Write("tokenizer.json", doc.dump());
  dir.Write(
      "tokenizer_config.json",
      R"({"eos_token": {"content": "<|im_end|>"}, "chat_template": "<|im_start|>x<|im_end|>"})");
  dir.Write("generation_config.json", R"({"eos_token_id": [2, 4]})");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromHuggingFace(dir.path());
  REQUIRE(tokenizer.ok());
  const int32_t endoftext = *(*tokenizer)->FindToken("<|endoftext|>");
  const int32_t im_end = *(*tokenizer)->FindToken("<|im_end|>");
  CHECK((*tokenizer)->eos_id() == im_end);
  CHECK((*tokenizer)->bos_id() == endoftext);
  CHECK((*tokenizer)->Encode("Hi", true).front() == endoftext);
  CHECK((*tokenizer)->IsEndOfGeneration(im_end));
  CHECK((*tokenizer)->IsEndOfGeneration(2));
  CHECK((*tokenizer)->IsEndOfGeneration(4));
  CHECK_FALSE((*tokenizer)->IsEndOfGeneration(3));
  CHECK((*tokenizer)->chat_template() == "<|im_start|>x<|im_end|>");
  const std::vector<ChatMessage> messages = {{"user", "Hi"}};
  CHECK(*ApplyChatTemplate(**tokenizer, messages, true) ==
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");

  SECTION("chat_template.jinja wins over the config's; add_bos_token does not override") {
    dir.Write("tokenizer_config.json", R"({"add_bos_token": false, "chat_template": "ignored"})");
    dir.Write("chat_template.jinja", "<|im_start|>{{ from the file }}<|im_end|>");
    absl::StatusOr<std::unique_ptr<Tokenizer>> other = Tokenizer::FromHuggingFace(dir.path());
    REQUIRE(other.ok());
    CHECK((*other)->Encode("Hi", true).front() == endoftext);
    CHECK((*other)->chat_template() == "<|im_start|>{{ from the file }}<|im_end|>");
  }
  SECTION("without a template, chat requests are NotFound") {
    dir.Write("tokenizer_config.json", "{}");
    absl::StatusOr<std::unique_ptr<Tokenizer>> plain = Tokenizer::FromHuggingFace(dir.path());
    REQUIRE(plain.ok());
    CHECK((*plain)->chat_template().empty());
    CHECK(ApplyChatTemplate(**plain, messages, true).status().code() ==
          absl::StatusCode::kNotFound);
  }
}

TEST_CASE("tokenizer.json: the tiny MoE models' tokenizer round-trips text",
          "[engine][tokenizer][hf]") {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromHuggingFace(testing::TestDataPath("moe/tiny_tokenizer"));
  INFO(tokenizer.status().ToString());
  REQUIRE(tokenizer.ok());
  CHECK((*tokenizer)->vocab_size() == 512);
  const std::string text = "The quick brown fox jumps over the lazy dog 1234, 'twas said.";
  const std::vector<int32_t> ids = (*tokenizer)->Encode(text, true);
  CHECK(ids.size() < text.size());  // Merges apply.
  CHECK(*(*tokenizer)->Decode(ids) == text);
  CHECK((*tokenizer)->IsEndOfGeneration(*(*tokenizer)->FindToken("<|im_end|>")));
  CHECK((*tokenizer)->Encode("<|im_start|>", true).size() == 1);
}

// Writes `doc` (after `edit`) and returns the load's status.
template <typename Edit>
absl::Status LoadEdited(const TempDir& dir, Edit edit) {
  json doc = StyleTokenizerJson("qwen2");
  edit(doc);
  dir.Write("tokenizer.json", doc.dump());
  return Tokenizer::FromHuggingFace(dir.path()).status();
}

TEST_CASE("tokenizer.json: unsupported or malformed files get errors naming file and field",
          "[engine][tokenizer][hf]") {
  TempDir dir("errors");
  auto expect = [&](absl::Status status, absl::StatusCode code, const std::string& needle) {
    INFO(status.ToString() << " (expected " << needle << ")");
    CHECK(status.code() == code);
    CHECK(std::string(status.message()).find(needle) != std::string::npos);
    CHECK(std::string(status.message()).find("tokenizer.json") != std::string::npos);
  };
  expect(Tokenizer::FromHuggingFace(dir.path()).status(), absl::StatusCode::kNotFound,
         "tokenizer.json");
  dir.Write("tokenizer.json", "{\"model\": ");
  expect(Tokenizer::FromHuggingFace(dir.path()).status(), absl::StatusCode::kInvalidArgument,
         "byte offset");
  expect(LoadEdited(dir, [](json& d) { d["model"]["type"] = "WordPiece"; }),
         absl::StatusCode::kUnimplemented, "model.type");
  expect(LoadEdited(dir, [](json& d) { d["model"]["byte_fallback"] = true; }),
         absl::StatusCode::kUnimplemented, "model.byte_fallback");
  expect(LoadEdited(dir, [](json& d) { d["model"]["vocab"]["hello"] = -3; }),
         absl::StatusCode::kInvalidArgument, "model.vocab[\"hello\"]");
  // A stray huge id would make the tables huge: ids must be below the number of entries.
  expect(LoadEdited(dir, [](json& d) { d["model"]["vocab"]["hello"] = 16000000; }),
         absl::StatusCode::kInvalidArgument, "model.vocab[\"hello\"]");
  expect(LoadEdited(dir, [](json& d) { d["added_tokens"][0]["id"] = 16000000; }),
         absl::StatusCode::kInvalidArgument, "added_tokens[0].id");
  // After ByteLevel a step would see the byte-level alphabet, not the text.
  expect(LoadEdited(dir,
                    [](json& d) {
                      d["pre_tokenizer"]["pretokenizers"].push_back(
                          {{"type", "Digits"}, {"individual_digits", true}});
                    }),
         absl::StatusCode::kUnimplemented, "after ByteLevel");
  // Odd but harmless post-processors and templates are ignored, not fatal.
  CHECK(LoadEdited(dir, [](json& d) { d["post_processor"] = {{"type", 5}}; }).ok());
  CHECK(LoadEdited(dir, [](json& d) {
          d["post_processor"] = {{"type", "TemplateProcessing"}, {"single", {7}}};
        }).ok());
  expect(LoadEdited(dir, [](json& d) { d["model"]["merges"][7] = 12; }),
         absl::StatusCode::kInvalidArgument, "model.merges[7]");
  expect(LoadEdited(dir, [](json& d) { d["added_tokens"][0]["id"] = "x"; }),
         absl::StatusCode::kInvalidArgument, "added_tokens[0]");
  expect(LoadEdited(dir,
                    [](json& d) {
                      d["normalizer"] = {{"type", "Lowercase"}};
                    }),
         absl::StatusCode::kUnimplemented, "normalizer type 'Lowercase'");
  expect(LoadEdited(dir,
                    [](json& d) {
                      d["pre_tokenizer"]["pretokenizers"][1] = {{"type", "Metaspace"}};
                    }),
         absl::StatusCode::kUnimplemented, "pre_tokenizer.pretokenizers[1]");
  expect(LoadEdited(
             dir, [](json& d) { d["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; }),
         absl::StatusCode::kUnimplemented, "pre_tokenizer.pretokenizers[0].behavior");
  expect(LoadEdited(dir,
                    [](json& d) {
                      d["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "a(?=b)";
                    }),
         absl::StatusCode::kUnimplemented, "lookaround");
  expect(LoadEdited(dir, [](json& d) { d["pre_tokenizer"] = nullptr; }),
         absl::StatusCode::kUnimplemented, "without a ByteLevel step");
  dir.Write("tokenizer_config.json", R"({"eos_token": "<|no such token|>"})");
  absl::Status eos = LoadEdited(dir, [](json&) {});
  CHECK(eos.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(eos.message()).find("tokenizer_config.json: eos_token") != std::string::npos);
}

TEST_CASE("TranslateOnigPattern: Unicode classes spelled out, the whitespace lookahead emulated",
          "[engine][tokenizer][hf]") {
  using tokenizer_internal::TranslateOnigPattern;
  auto qwen = TranslateOnigPattern("[^\\s\\p{L}]+|\\s+(?!\\S)|\\s+");
  REQUIRE(qwen.ok());
  CHECK(qwen->whitespace_lookahead);
  CHECK(qwen->re2 == "[^\\t-\\r\\x{85}\\p{Z}\\p{L}]+|([\\t-\\r\\x{85}\\p{Z}]+)");
  // The tail inside a group is not the top-level alternative: refused, not approximated.
  CHECK(TranslateOnigPattern("(a|\\s+(?!\\S)|\\s+)").status().code() ==
        absl::StatusCode::kUnimplemented);
  CHECK(TranslateOnigPattern("[^\\S]").status().code() == absl::StatusCode::kUnimplemented);
  CHECK(TranslateOnigPattern("\\bword").status().code() == absl::StatusCode::kUnimplemented);
  CHECK(TranslateOnigPattern("(ab").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(TranslateOnigPattern("\\u00e9+")->re2 == "\\x{00e9}+");
  // Oniguruma's ^ and $ are line anchors, its m flag is RE2's s; unknown flags are refused.
  CHECK(TranslateOnigPattern("^a$")->re2 == "(?m:^)a(?m:$)");
  CHECK(TranslateOnigPattern("(?m:a.)|(?i)b")->re2 == "(?s:a.)|(?i)b");
  CHECK(TranslateOnigPattern("(?<word>a)")->re2 == "(?P<word>a)");
  CHECK(TranslateOnigPattern("(?x)a").status().code() == absl::StatusCode::kUnimplemented);

  // Splitting: a run of spaces before a word gives its last space to the word; Unicode
  // spaces count as spaces, as in Oniguruma.
  auto splitter = tokenizer_internal::RegexPreTokenizer::Create(
      {"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\s+(?!\\S)|\\s+"}, false);
  REQUIRE(splitter.ok());
  auto words = [&](const std::string& text) {
    std::string normalized;
    std::vector<tokenizer_internal::WordSpan> spans;
    (*splitter)->Split(text, &normalized, &spans);
    std::vector<std::string> out;
    for (const auto& s : spans) out.push_back(normalized.substr(s.offset, s.length));
    return out;
  };
  CHECK(words("a   b") == std::vector<std::string>{"a", "  ", " b"});
  CHECK(words("a \xC2\xA0"
              "b") == std::vector<std::string>{"a", " ",
                                               "\xC2\xA0"
                                               "b"});
  CHECK(words("a  ") == std::vector<std::string>{"a", "  "});
  CHECK(words("a 1") == std::vector<std::string>{"a", " ", "1"});
}

}  // namespace
}  // namespace tessera::engine
