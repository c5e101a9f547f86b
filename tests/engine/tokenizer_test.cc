// Tokenizer tests. The reference is llama.cpp: tests/data/tokenizer/smollm2_cases.jsonl holds
// texts with the ids and decoded text it gives them, for the default model's vocabulary
// (scripts/reference/make_tokenizer_fixture.py writes it).
#include "engine/tokenizer/tokenizer.h"

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/gguf/gguf_file.h"
#include "nlohmann/json.hpp"
#include "tests/test_paths.h"

namespace tessera::engine {
namespace {

// Independent of the tokenizer's own UTF-8 code: RFC 3629 well-formedness.
bool IsWellFormedUtf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = p[i];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

struct Fixture {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tokenizer;
};

const Fixture& Model() {
  static const Fixture* fixture = [] {
    auto* f = new Fixture;
    absl::StatusOr<std::unique_ptr<GgufFile>> file =
        GgufFile::Open(testing::DefaultModelPath());
    INFO("run scripts/fetch_model: " << file.status().ToString());
    REQUIRE(file.ok());
    f->file = *std::move(file);
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromGguf(*f->file);
    INFO(tokenizer.status().ToString());
    REQUIRE(tokenizer.ok());
    f->tokenizer = *std::move(tokenizer);
    return f;
  }();
  return *fixture;
}

struct Case {
  std::string kind;
  std::string text;
  bool parse_special = false;
  std::vector<int32_t> ids;
  std::string decoded;
  bool decoded_is_utf8 = true;
  std::string decoded_lossy;  // The decoded bytes with U+FFFD for ill-formed parts.
  nlohmann::json chat;        // Null unless a chat template case.
};

std::string FromHex(const std::string& hex) { return absl::HexStringToBytes(hex); }

const std::vector<Case>& Cases() {
  static const std::vector<Case>* cases = [] {
    auto* out = new std::vector<Case>;
    std::ifstream in(testing::TestDataPath("tokenizer/smollm2_cases.jsonl"));
    REQUIRE(in.good());
    std::string line;
    while (std::getline(in, line)) {
      nlohmann::json j = nlohmann::json::parse(line);
      Case c;
      c.kind = j["kind"].get<std::string>();
      c.text = j["text"].is_null() ? FromHex(j["text_hex"].get<std::string>())
                                   : j["text"].get<std::string>();
      c.parse_special = j["parse_special"].get<bool>();
      c.ids = j["ids"].get<std::vector<int32_t>>();
      if (j["decoded"].is_null()) {
        c.decoded = FromHex(j["decoded_hex"].get<std::string>());
        c.decoded_is_utf8 = false;
        c.decoded_lossy = j["decoded_lossy"].get<std::string>();
      } else {
        c.decoded = j["decoded"].get<std::string>();
        c.decoded_lossy = c.decoded;
      }
      if (j.contains("chat")) c.chat = j["chat"];
      out->push_back(std::move(c));
    }
    return out;
  }();
  return *cases;
}

std::string Describe(const Case& c) {
  return absl::StrCat(c.kind, " case \"", absl::CHexEscape(c.text.substr(0, 200)),
                      "\" parse_special=", c.parse_special);
}

TEST_CASE("Tokenizer: the fixture is large and varied", "[engine][tokenizer]") {
  const std::vector<Case>& cases = Cases();
  CHECK(cases.size() >= 2000);
  int chat = 0, special = 0, invalid = 0;
  for (const Case& c : cases) {
    chat += c.kind == "chat";
    special += c.parse_special;
    invalid += c.kind == "invalid_utf8";
  }
  CHECK(chat >= 6);
  CHECK(special >= 100);
  CHECK(invalid >= 10);
}

TEST_CASE("Tokenizer: every fixture case encodes to exactly llama.cpp's ids",
          "[engine][tokenizer]") {
  const Tokenizer& tokenizer = *Model().tokenizer;
  int mismatches = 0;
  for (const Case& c : Cases()) {
    std::vector<int32_t> ids = tokenizer.Encode(c.text, c.parse_special);
    if (ids != c.ids && ++mismatches <= 10) {
      FAIL_CHECK(Describe(c) << "\n  got  " << absl::StrJoin(ids, ",") << "\n  want "
                             << absl::StrJoin(c.ids, ","));
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("Tokenizer: the fixture's ids decode to exactly llama.cpp's text",
          "[engine][tokenizer]") {
  const Tokenizer& tokenizer = *Model().tokenizer;
  int mismatches = 0;
  for (const Case& c : Cases()) {
    absl::StatusOr<std::string> text = tokenizer.Decode(c.ids);
    REQUIRE(text.ok());
    if (*text != c.decoded && ++mismatches <= 10) {
      FAIL_CHECK(Describe(c) << "\n  got  \"" << absl::CHexEscape(*text) << "\"\n  want \""
                             << absl::CHexEscape(c.decoded) << "\"");
    }
  }
  CHECK(mismatches == 0);
}

// Streams `ids` through an IncrementalDetokenizer; every chunk must be well-formed.
std::string StreamText(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                       int* bad_chunks) {
  IncrementalDetokenizer detokenizer(tokenizer);
  std::string all;
  for (int32_t id : ids) {
    absl::StatusOr<std::string> chunk = detokenizer.Push(id);
    REQUIRE(chunk.ok());
    if (!IsWellFormedUtf8(*chunk)) ++*bad_chunks;
    all += *chunk;
  }
  std::string rest = detokenizer.Flush();
  if (!IsWellFormedUtf8(rest)) ++*bad_chunks;
  return all + rest;
}

TEST_CASE("IncrementalDetokenizer: chunks are whole UTF-8 and add up to the decoded text",
          "[engine][tokenizer]") {
  const Tokenizer& tokenizer = *Model().tokenizer;
  int mismatches = 0, bad_chunks = 0, lossy_cases = 0;
  for (const Case& c : Cases()) {
    std::string streamed = StreamText(tokenizer, c.ids, &bad_chunks);
    // For ids whose bytes are not UTF-8 (the vocabulary lacks some lead bytes), the stream
    // replaces each maximal ill-formed subsequence with U+FFFD, as Python's decoder does.
    if (!c.decoded_is_utf8) ++lossy_cases;
    if (streamed != c.decoded_lossy && ++mismatches <= 10) {
      FAIL_CHECK(Describe(c) << "\n  got  \"" << absl::CHexEscape(streamed) << "\"\n  want \""
                             << absl::CHexEscape(c.decoded_lossy) << "\"");
    }
  }
  CHECK(bad_chunks == 0);
  CHECK(mismatches == 0);
  CHECK(lossy_cases > 0);
}

TEST_CASE("IncrementalDetokenizer: an emoji split across byte tokens is held back until whole",
          "[engine][tokenizer]") {
  const Tokenizer& tokenizer = *Model().tokenizer;
  IncrementalDetokenizer detokenizer(tokenizer);

  SECTION("a rare emoji encodes to several tokens and streams as one chunk") {
    const std::string emoji = "\xF0\x9F\xAB\xA0";  // U+1FAE0 melting face.
    std::vector<int32_t> ids = tokenizer.Encode(emoji, false);
    REQUIRE(ids.size() > 1);
    std::vector<std::string> chunks;
    for (int32_t id : ids) chunks.push_back(*detokenizer.Push(id));
    for (size_t i = 0; i + 1 < chunks.size(); ++i) CHECK(chunks[i].empty());
    CHECK(chunks.back() == emoji);
    CHECK(detokenizer.Flush().empty());
  }

  SECTION("a ZWJ family with skin tones streams as valid chunks that add up") {
    const std::string text = "Family: \xF0\x9F\x91\xA9\xF0\x9F\x8F\xBE\xE2\x80\x8D\xF0\x9F\x92\xBB!";
    std::vector<int32_t> ids = tokenizer.Encode(text, false);
    int bad_chunks = 0;
    CHECK(StreamText(tokenizer, ids, &bad_chunks) == text);
    CHECK(bad_chunks == 0);
  }

  // Byte tokens: the byte-level spellings of raw bytes 0xF0 0x9F 0x98 0x80 (U+1F600).
  const int32_t f0 = *tokenizer.FindToken("\xC3\xB0");
  const int32_t x9f = *tokenizer.FindToken("\xC5\x81");
  const int32_t x98 = *tokenizer.FindToken("\xC4\xBA");
  const int32_t x80 = *tokenizer.FindToken("\xC4\xA2");
  REQUIRE(*tokenizer.TokenBytes(f0) == "\xF0");
  REQUIRE(*tokenizer.TokenBytes(x9f) == "\x9F");
  REQUIRE(*tokenizer.TokenBytes(x98) == "\x98");
  REQUIRE(*tokenizer.TokenBytes(x80) == "\x80");
  const std::string kReplacement = "\xEF\xBF\xBD";

  SECTION("byte by byte, nothing is emitted before the last byte") {
    CHECK(*detokenizer.Push(f0) == "");
    CHECK(*detokenizer.Push(x9f) == "");
    CHECK(*detokenizer.Push(x98) == "");
    CHECK(*detokenizer.Push(x80) == "\xF0\x9F\x98\x80");
  }
  SECTION("a sequence cut short by another character becomes one U+FFFD") {
    CHECK(*detokenizer.Push(f0) == "");
    CHECK(*detokenizer.Push(x9f) == "");
    const int32_t a = *tokenizer.FindToken("a");
    CHECK(*detokenizer.Push(a) == kReplacement + "a");
  }
  SECTION("a byte that can never start a sequence is replaced at once") {
    CHECK(*detokenizer.Push(x80) == kReplacement);
  }
  SECTION("Flush turns an incomplete tail into U+FFFD and resets") {
    CHECK(*detokenizer.Push(f0) == "");
    CHECK(*detokenizer.Push(x9f) == "");
    CHECK(detokenizer.Flush() == kReplacement);
    CHECK(detokenizer.Flush().empty());
    CHECK(*detokenizer.Push(*tokenizer.FindToken("b")) == "b");
  }
  SECTION("an out-of-range id is an error and leaves the held bytes alone") {
    CHECK(*detokenizer.Push(f0) == "");
    absl::StatusOr<std::string> bad = detokenizer.Push(tokenizer.vocab_size());
    CHECK(bad.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(*detokenizer.Push(x9f) == "");
    CHECK(*detokenizer.Push(x98) == "");
    CHECK(*detokenizer.Push(x80) == "\xF0\x9F\x98\x80");
  }
}

TEST_CASE("Tokenizer: SmolLM2's special ids and end-of-generation set match llama.cpp",
          "[engine][tokenizer]") {
  const Tokenizer& tokenizer = *Model().tokenizer;
  CHECK(tokenizer.vocab_size() == 49152);
  CHECK(tokenizer.bos_id() == 1);
  CHECK(tokenizer.eos_id() == 2);
  CHECK(tokenizer.FindToken("<|im_start|>") == 1);
  CHECK(tokenizer.FindToken("<|im_end|>") == 2);
  CHECK(tokenizer.FindToken("\xC4\xA0the").has_value());  // "Ġthe"
  CHECK_FALSE(tokenizer.FindToken("no such token here").has_value());
  std::vector<int32_t> end_ids;
  for (int32_t id = -1; id <= tokenizer.vocab_size(); ++id) {
    if (tokenizer.IsEndOfGeneration(id)) end_ids.push_back(id);
  }
  // <|endoftext|>, <|im_end|> (EOS) and <reponame> (llama.cpp's FIM repo token).
  CHECK(end_ids == std::vector<int32_t>{0, 2, 4});
  CHECK(*tokenizer.TokenBytes(2) == "<|im_end|>");
  CHECK(tokenizer.Encode("", true).empty());  // add_bos_token is false.
}

TEST_CASE("Tokenizer: control tokens are only matched in the text with parse_special",
          "[engine][tokenizer]") {
  const Tokenizer& tokenizer = *Model().tokenizer;
  CHECK(tokenizer.Encode("<|im_end|>", true) == std::vector<int32_t>{2});
  std::vector<int32_t> plain = tokenizer.Encode("<|im_end|>", false);
  CHECK(plain.size() > 1);
  CHECK(*tokenizer.Decode(plain) == "<|im_end|>");
}

TEST_CASE("Tokenizer: out-of-range ids are errors naming the id and its index",
          "[engine][tokenizer]") {
  const Tokenizer& tokenizer = *Model().tokenizer;
  std::vector<int32_t> ids = {1, 2, 49152, 3};
  absl::StatusOr<std::string> text = tokenizer.Decode(ids);
  REQUIRE(text.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(text.status().message()), Catch::Contains("49152") &&
                                                       Catch::Contains("index 2"));
  std::vector<int32_t> negative = {-7};
  CHECK_THAT(std::string(tokenizer.Decode(negative).status().message()),
             Catch::Contains("-7") && Catch::Contains("index 0"));
  CHECK(tokenizer.TokenBytes(-1).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(tokenizer.TokenBytes(49152).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(tokenizer.IsEndOfGeneration(49152));
  CHECK(tokenizer.Decode(std::vector<int32_t>{}).value().empty());
}

const std::string kSystem =
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n";

TEST_CASE("ApplyChatTemplate: SmolLM2 conversations render as its template does",
          "[engine][tokenizer]") {
  const Tokenizer& tokenizer = *Model().tokenizer;
  auto render = [&](std::vector<ChatMessage> messages, bool add_generation_prompt) {
    absl::StatusOr<std::string> text =
        ApplyChatTemplate(tokenizer, messages, add_generation_prompt);
    REQUIRE(text.ok());
    return *text;
  };
  SECTION("one user message gets the default system message") {
    CHECK(render({{"user", "Hi"}}, true) ==
          kSystem + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    CHECK(render({{"user", "Hi"}}, false) == kSystem + "<|im_start|>user\nHi<|im_end|>\n");
  }
  SECTION("a leading system message replaces the default") {
    CHECK(render({{"system", "Be brief."}}, false) ==
          "<|im_start|>system\nBe brief.<|im_end|>\n");
    CHECK(render({{"system", "Be brief."}, {"user", "Why?"}}, true) ==
          "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n"
          "<|im_start|>assistant\n");
  }
  SECTION("two and three message conversations without a system message") {
    CHECK(render({{"user", "2+2?"}, {"assistant", "4"}}, false) ==
          kSystem + "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n");
    CHECK(render({{"user", "A"}, {"assistant", "B"}, {"user", "C"}}, true) ==
          kSystem +
              "<|im_start|>user\nA<|im_end|>\n<|im_start|>assistant\nB<|im_end|>\n"
              "<|im_start|>user\nC<|im_end|>\n<|im_start|>assistant\n");
  }
  SECTION("three messages with a system message") {
    CHECK(render({{"system", "S"}, {"user", "U"}, {"assistant", "A"}}, false) ==
          "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
          "<|im_start|>assistant\nA<|im_end|>\n");
  }
  SECTION("no messages: only the generation prompt") {
    CHECK(render({}, true) == "<|im_start|>assistant\n");
  }
}

TEST_CASE("ApplyChatTemplate: the fixture's chat cases match Jinja's rendering and llama.cpp's ids",
          "[engine][tokenizer]") {
  const Fixture& model = Model();
  int chat_cases = 0;
  for (const Case& c : Cases()) {
    if (c.chat.is_null()) continue;
    ++chat_cases;
    std::vector<ChatMessage> messages;
    for (const nlohmann::json& m : c.chat["messages"]) {
      messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
    absl::StatusOr<std::string> text =
        ApplyChatTemplate(*model.tokenizer, messages, c.chat["add_generation_prompt"].get<bool>());
    REQUIRE(text.ok());
    CHECK(*text == c.text);
    CHECK(model.tokenizer->Encode(*text, true) == c.ids);
  }
  CHECK(chat_cases >= 6);
}

TEST_CASE("ApplyChatTemplate: templates outside the ChatML family are Unimplemented, named",
          "[engine][tokenizer]") {
  const std::vector<ChatMessage> messages = {{"user", "Hi"}};
  absl::StatusOr<std::string> llama3 = ApplyChatTemplate(
      "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
      "{{ m['content'] }}<|eot_id|>{% endfor %}",
      messages, true);
  REQUIRE(llama3.status().code() == absl::StatusCode::kUnimplemented);
  CHECK_THAT(std::string(llama3.status().message()), Catch::Contains("Llama 3"));
  absl::StatusOr<std::string> odd = ApplyChatTemplate("{{ custom }}", messages, true);
  REQUIRE(odd.status().code() == absl::StatusCode::kUnimplemented);
  CHECK_THAT(std::string(odd.status().message()), Catch::Contains("{{ custom }}"));
}

// Writes a GGUF v3 file holding only metadata, for vocabularies made up in tests.
class MetadataWriter {
 public:
  void String(const std::string& key, const std::string& value) {
    Key(key, 8);
    Str(value);
  }
  void Bool(const std::string& key, bool value) {
    Key(key, 7);
    bytes_.push_back(value ? 1 : 0);
  }
  void Int(const std::string& key, int32_t value) {
    Key(key, 5);
    Pod(value);
  }
  void Strings(const std::string& key, const std::vector<std::string>& values) {
    Key(key, 9);
    Pod(uint32_t{8});
    Pod(static_cast<uint64_t>(values.size()));
    for (const std::string& v : values) Str(v);
  }
  void Ints(const std::string& key, const std::vector<int32_t>& values) {
    Key(key, 9);
    Pod(uint32_t{5});
    Pod(static_cast<uint64_t>(values.size()));
    for (int32_t v : values) Pod(v);
  }
  std::vector<uint8_t> Finish() const {
    std::vector<uint8_t> out = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
    auto put64 = [&](uint64_t v) {
      for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
    };
    put64(0);  // Tensors.
    put64(count_);
    out.insert(out.end(), bytes_.begin(), bytes_.end());
    return out;
  }

 private:
  template <typename T>
  void Pod(T v) {
    uint8_t raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    bytes_.insert(bytes_.end(), raw, raw + sizeof(T));
  }
  void Str(const std::string& s) {
    Pod(static_cast<uint64_t>(s.size()));
    bytes_.insert(bytes_.end(), s.begin(), s.end());
  }
  void Key(const std::string& key, uint32_t type) {
    ++count_;
    Str(key);
    Pod(type);
  }
  std::vector<uint8_t> bytes_;
  uint64_t count_ = 0;
};

// A vocabulary of the 256 byte-level characters, "ab", "abc" and <s>, with merges "a b" and
// "ab c".
MetadataWriter TinyVocab(const std::string& model, const std::string& pre) {
  std::vector<std::string> tokens = {"<s>"};
  std::vector<int32_t> types = {3};
  const std::vector<int32_t> spelled = [] {
    std::vector<int32_t> v;
    for (int b = 0x21; b <= 0x7E; ++b) v.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) v.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) v.push_back(b);
    for (int n = 0; n < 68; ++n) v.push_back(0x100 + n);
    return v;
  }();
  for (int32_t cpt : spelled) {
    std::string s;
    if (cpt < 0x80) {
      s.push_back(static_cast<char>(cpt));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
      s.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    }
    tokens.push_back(s);
    types.push_back(1);
  }
  tokens.insert(tokens.end(), {"ab", "abc"});
  types.insert(types.end(), {1, 1});
  MetadataWriter w;
  w.String("tokenizer.ggml.model", model);
  w.String("tokenizer.ggml.pre", pre);
  w.Strings("tokenizer.ggml.tokens", tokens);
  w.Ints("tokenizer.ggml.token_type", types);
  w.Strings("tokenizer.ggml.merges", {"a b", "ab c"});
  w.Int("tokenizer.ggml.bos_token_id", 0);
  w.Int("tokenizer.ggml.eos_token_id", 0);
  return w;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const MetadataWriter& w,
                                                std::vector<uint8_t>* storage) {
  *storage = w.Finish();
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Parse(*storage, "tiny.gguf");
  REQUIRE(file.ok());
  return Tokenizer::FromGguf(**file);
}

TEST_CASE("Tokenizer: unknown tokenizer models and pre-tokenizers are InvalidArgument, named",
          "[engine][tokenizer]") {
  std::vector<uint8_t> storage;
  absl::StatusOr<std::unique_ptr<Tokenizer>> spm = Load(TinyVocab("llama", "smollm"), &storage);
  REQUIRE(spm.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(spm.status().message()), Catch::Contains("'llama'"));
  absl::StatusOr<std::unique_ptr<Tokenizer>> qwen = Load(TinyVocab("gpt2", "qwen2"), &storage);
  REQUIRE(qwen.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(qwen.status().message()), Catch::Contains("'qwen2'"));
  CHECK(Load(TinyVocab("gpt2", "smollm"), &storage).ok());
}

TEST_CASE("Tokenizer: add_bos_token is honoured when a file sets it", "[engine][tokenizer]") {
  std::vector<uint8_t> storage;
  MetadataWriter w = TinyVocab("gpt2", "smollm");
  w.Bool("tokenizer.ggml.add_bos_token", true);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Load(w, &storage);
  REQUIRE(tokenizer.ok());
  const int32_t abc = *(*tokenizer)->FindToken("abc");
  const int32_t b = *(*tokenizer)->FindToken("b");
  CHECK((*tokenizer)->Encode("abc", false) == std::vector<int32_t>{0, abc});
  CHECK((*tokenizer)->Encode("bab", false) == std::vector<int32_t>{0, b, abc - 1});
  CHECK((*tokenizer)->Encode("", false) == std::vector<int32_t>{0});
}

}  // namespace
}  // namespace tessera::engine
