// Tokenizer::FromHuggingFace (declared in tokenizer.h): reads a checkpoint's tokenizer.json and
// its companions into the same Vocab and BPE that GGUF files use, with a RegexPreTokenizer for
// the tokenizer.json's normalizer and pre-tokenizer.
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/json_file.h"
#include "common/status_macros.h"
#include "engine/tokenizer/regex_pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/vocab.h"
#include "re2/re2.h"

namespace tessera::engine {
namespace {

using json = nlohmann::json;
using tokenizer_internal::TokenType;
using tokenizer_internal::Vocab;

// What ByteLevel(use_regex = true) splits with: GPT-2's pattern.
constexpr absl::string_view kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
// eos_token_id values past this are not ids of any real vocabulary.
constexpr int64_t kMaxTokenId = int64_t{1} << 24;

// Errors that name the file and the field.
class FileErrors {
 public:
  explicit FileErrors(std::string path) : path_(std::move(path)) {}
  absl::Status Invalid(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", field, " ", what));
  }
  absl::Status Unsupported(absl::string_view field, absl::string_view what) const {
    return absl::UnimplementedError(
        absl::StrCat(path_, ": ", field, " ", what, " is not supported (byte-level BPE only)"));
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

absl::StatusOr<std::string> TypeOf(const json& node, absl::string_view field,
                                   const FileErrors& errors) {
  if (!node.is_object() || !node.contains("type") || !node["type"].is_string()) {
    return errors.Invalid(field, "has no \"type\" string");
  }
  return node["type"].get<std::string>();
}

// node[key] if node is an object holding a string there, else "".
std::string StringOr(const json& node, const char* key) {
  if (!node.is_object()) return "";
  auto it = node.find(key);
  return it != node.end() && it->is_string() ? it->get<std::string>() : "";
}

bool BoolOr(const json& node, const char* key, bool fallback) {
  auto it = node.find(key);
  return it != node.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

struct PreTokenizerPlan {
  std::vector<std::string> patterns;
  bool byte_level = false;
};

absl::Status AddPreTokenizer(const json& node, const std::string& field, const FileErrors& errors,
                             PreTokenizerPlan* plan) {
  if (node.is_null()) return absl::OkStatus();
  TESSERA_ASSIGN_OR_RETURN(std::string type, TypeOf(node, field, errors));
  if (plan->byte_level && type != "Sequence") {
    // Later steps would see the byte-level alphabet ("Ġ" for a space), not the text.
    return errors.Unsupported(field, absl::StrCat("a '", type, "' step after ByteLevel"));
  }
  if (type == "Sequence") {
    if (!node.contains("pretokenizers") || !node["pretokenizers"].is_array()) {
      return errors.Invalid(field, "has no \"pretokenizers\" array");
    }
    for (size_t i = 0; i < node["pretokenizers"].size(); ++i) {
      TESSERA_RETURN_IF_ERROR(AddPreTokenizer(
          node["pretokenizers"][i], absl::StrCat(field, ".pretokenizers[", i, "]"), errors, plan));
    }
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    if (BoolOr(node, "add_prefix_space", true)) {
      return errors.Unsupported(field, "ByteLevel with add_prefix_space");
    }
    if (BoolOr(node, "use_regex", true)) plan->patterns.emplace_back(kGpt2Pattern);
    plan->byte_level = true;
    return absl::OkStatus();
  }
  if (type == "Digits") {
    plan->patterns.emplace_back(BoolOr(node, "individual_digits", false) ? "\\p{N}" : "\\p{N}+");
    return absl::OkStatus();
  }
  if (type == "Split") {
    const json& pattern = node.contains("pattern") ? node["pattern"] : json();
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      plan->patterns.push_back(pattern["Regex"].get<std::string>());
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      plan->patterns.push_back(re2::RE2::QuoteMeta(pattern["String"].get<std::string>()));
    } else {
      return errors.Invalid(field, "has no pattern.Regex or pattern.String");
    }
    const std::string behavior = node.contains("behavior") && node["behavior"].is_string()
                                     ? node["behavior"].get<std::string>()
                                     : "";
    if (behavior != "Isolated") {
      return errors.Unsupported(absl::StrCat(field, ".behavior"), absl::StrCat("'", behavior, "'"));
    }
    if (BoolOr(node, "invert", false)) return errors.Unsupported(field, "Split with invert");
    return absl::OkStatus();
  }
  return errors.Unsupported(field, absl::StrCat("pre-tokenizer type '", type, "'"));
}

// Whether the normalizer is NFC (true) or nothing (false).
absl::StatusOr<bool> ReadNormalizer(const json& node, const std::string& field,
                                    const FileErrors& errors) {
  if (node.is_null()) return false;
  TESSERA_ASSIGN_OR_RETURN(std::string type, TypeOf(node, field, errors));
  if (type == "NFC") return true;
  if (type == "Sequence" && node.contains("normalizers") && node["normalizers"].is_array()) {
    bool nfc = false;
    for (size_t i = 0; i < node["normalizers"].size(); ++i) {
      TESSERA_ASSIGN_OR_RETURN(
          bool one, ReadNormalizer(node["normalizers"][i],
                                   absl::StrCat(field, ".normalizers[", i, "]"), errors));
      nfc = nfc || one;
    }
    return nfc;
  }
  return errors.Unsupported(field, absl::StrCat("normalizer type '", type, "'"));
}

absl::Status CheckDecoder(const json& node, const std::string& field, const FileErrors& errors) {
  if (node.is_null()) return absl::OkStatus();
  TESSERA_ASSIGN_OR_RETURN(std::string type, TypeOf(node, field, errors));
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "Sequence" && node.contains("decoders") && node["decoders"].is_array()) {
    for (size_t i = 0; i < node["decoders"].size(); ++i) {
      TESSERA_RETURN_IF_ERROR(
          CheckDecoder(node["decoders"][i], absl::StrCat(field, ".decoders[", i, "]"), errors));
    }
    return absl::OkStatus();
  }
  return errors.Unsupported(field, absl::StrCat("decoder type '", type, "'"));
}

// Puts `text` at `id`, growing the tables (holes become unused tokens).
void Place(int32_t id, std::string text, TokenType type, Vocab::Parts* parts) {
  if (static_cast<size_t>(id) >= parts->texts.size()) {
    parts->texts.resize(id + 1);
    parts->types.resize(id + 1, TokenType::kUnused);
  }
  parts->texts[id] = std::move(text);
  parts->types[id] = type;
}

// Token ids must lie below `id_limit`: the number of vocabulary and added-token entries, so
// a stray id cannot make the tables huge (real vocabularies number their tokens densely).
absl::Status ReadModel(const json& model, int64_t id_limit, const FileErrors& errors,
                       Vocab::Parts* parts) {
  if (!model.is_object()) return errors.Invalid("model", "is not an object");
  if (model.contains("type") && model["type"] != "BPE") {
    return errors.Unsupported("model.type", absl::StrCat("'", model["type"].dump(), "'"));
  }
  if (BoolOr(model, "byte_fallback", false)) {
    return errors.Unsupported("model.byte_fallback", "true (SentencePiece-style BPE)");
  }
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(affix) && model[affix].is_string() &&
        !model[affix].get<std::string>().empty()) {
      return errors.Unsupported(absl::StrCat("model.", affix), model[affix].dump());
    }
  }
  if (!model.contains("vocab") || !model["vocab"].is_object() || model["vocab"].empty()) {
    return errors.Invalid("model.vocab", "is missing or empty");
  }
  for (const auto& [text, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= id_limit) {
      return errors.Invalid(absl::StrCat("model.vocab[\"", text, "\"]"),
                            absl::StrCat("is ", id.dump(), ", not an id in [0, ", id_limit,
                                         ") (the number of vocab and added_tokens entries)"));
    }
    Place(id.get<int32_t>(), text, TokenType::kNormal, parts);
  }
  if (!model.contains("merges") || !model["merges"].is_array()) {
    return errors.Invalid("model.merges", "is missing");
  }
  const json& merges = model["merges"];
  parts->merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& merge = merges[i];
    if (merge.is_string()) {  // "left right"; the split is at the first space after one byte.
      const std::string spelled = merge.get<std::string>();
      const size_t space = spelled.find(' ', 1);
      if (space == std::string::npos) {
        return errors.Invalid(absl::StrCat("model.merges[", i, "]"), "has no space");
      }
      parts->merges.emplace_back(spelled.substr(0, space), spelled.substr(space + 1));
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      parts->merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    } else {
      return errors.Invalid(absl::StrCat("model.merges[", i, "]"),
                            "is neither \"left right\" nor [left, right]");
    }
  }
  parts->ignore_merges = BoolOr(model, "ignore_merges", false);
  return absl::OkStatus();
}

absl::Status ReadAddedTokens(const json& added, int64_t id_limit, const FileErrors& errors,
                             Vocab::Parts* parts) {
  if (added.is_null()) return absl::OkStatus();
  if (!added.is_array()) return errors.Invalid("added_tokens", "is not an array");
  for (size_t i = 0; i < added.size(); ++i) {
    const json& token = added[i];
    const std::string field = absl::StrCat("added_tokens[", i, "]");
    if (!token.is_object() || !token.contains("id") || !token["id"].is_number_integer() ||
        !token.contains("content") || !token["content"].is_string()) {
      return errors.Invalid(field, "needs an integer id and a string content");
    }
    const int64_t id = token["id"].get<int64_t>();
    if (id < 0 || id >= id_limit) {
      return errors.Invalid(absl::StrCat(field, ".id"),
                            absl::StrCat("is ", id, ", not an id in [0, ", id_limit,
                                         ") (the number of vocab and added_tokens entries)"));
    }
    Place(static_cast<int32_t>(id), token["content"].get<std::string>(),
          BoolOr(token, "special", false) ? TokenType::kControl : TokenType::kUserDefined, parts);
  }
  return absl::OkStatus();
}

// The text of a special token as tokenizer_config.json spells it: a string, an AddedToken
// object ({"content": ...}), or null.
std::optional<std::string> SpecialTokenText(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return std::nullopt;
}

// The BOS token the post-processor prepends to a single sequence, if any.
std::optional<std::string> PostProcessorBos(const json& node) {
  if (!node.is_object()) return std::nullopt;
  const std::string type = StringOr(node, "type");
  if (type == "Sequence" && node.contains("processors") && node["processors"].is_array()) {
    for (const json& p : node["processors"]) {
      if (std::optional<std::string> bos = PostProcessorBos(p)) return bos;
    }
    return std::nullopt;
  }
  if (type != "TemplateProcessing" || !node.contains("single") || !node["single"].is_array() ||
      node["single"].empty()) {
    return std::nullopt;
  }
  const json& first = node["single"][0];
  if (!first.is_object() || !first.contains("SpecialToken") ||
      !first["SpecialToken"].is_object() || !first["SpecialToken"].contains("id") ||
      !first["SpecialToken"]["id"].is_string()) {
    return std::nullopt;
  }
  return first["SpecialToken"]["id"].get<std::string>();
}

// eos_token_id as config.json and generation_config.json give it: one id or a list.
absl::Status AddEosIds(const std::filesystem::path& path, std::vector<int32_t>* ids) {
  if (!std::filesystem::exists(path)) return absl::OkStatus();
  TESSERA_ASSIGN_OR_RETURN(json config, ReadJsonFile(path.string()));
  if (!config.is_object() || !config.contains("eos_token_id")) return absl::OkStatus();
  const json& eos = config["eos_token_id"];
  const json list = eos.is_array() ? eos : json::array({eos});
  for (const json& id : list) {
    if (id.is_null()) continue;
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxTokenId) {
      return absl::InvalidArgumentError(
          absl::StrCat(path.string(), ": eos_token_id holds ", id.dump(), ", not a token id"));
    }
    ids->push_back(id.get<int32_t>());
  }
  return absl::OkStatus();
}

// chat_template.jinja beside the config takes priority over the config's chat_template, as in
// transformers.
absl::StatusOr<std::string> ReadChatTemplate(const std::filesystem::path& dir, const json& config,
                                             const FileErrors& errors) {
  const std::filesystem::path jinja = dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja)) {
    std::ifstream in(jinja);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  auto it = config.find("chat_template");
  if (it != config.end() && it->is_string()) return it->get<std::string>();
  if (it != config.end() && it->is_array()) {  // [{"name": ..., "template": ...}]
    for (const json& named : *it) {
      if (StringOr(named, "name") == "default" && named.contains("template") &&
          named["template"].is_string()) {
        return named["template"].get<std::string>();
      }
    }
    return errors.Invalid("chat_template", "lists no \"default\" template");
  }
  return std::string();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromHuggingFace(
    const std::string& directory) {
  const std::filesystem::path dir(directory);
  const std::string tokenizer_path = (dir / "tokenizer.json").string();
  TESSERA_ASSIGN_OR_RETURN(json tokenizer, ReadJsonFile(tokenizer_path));
  const FileErrors errors(tokenizer_path);
  if (!tokenizer.is_object()) return errors.Invalid("the document", "is not an object");
  auto section = [&](const char* key) { return tokenizer.contains(key) ? tokenizer[key] : json(); };

  Vocab::Parts parts;
  const json model = section("model");
  const json added = section("added_tokens");
  const int64_t id_limit =
      static_cast<int64_t>((model.is_object() && model.contains("vocab") &&
                                    model["vocab"].is_object()
                                ? model["vocab"].size()
                                : 0) +
                           (added.is_array() ? added.size() : 0));
  TESSERA_RETURN_IF_ERROR(ReadModel(model, id_limit, errors, &parts));
  TESSERA_RETURN_IF_ERROR(ReadAddedTokens(added, id_limit, errors, &parts));
  TESSERA_ASSIGN_OR_RETURN(bool nfc, ReadNormalizer(section("normalizer"), "normalizer", errors));
  PreTokenizerPlan plan;
  TESSERA_RETURN_IF_ERROR(
      AddPreTokenizer(section("pre_tokenizer"), "pre_tokenizer", errors, &plan));
  if (!plan.byte_level) {
    return errors.Unsupported("pre_tokenizer", "without a ByteLevel step");
  }
  TESSERA_RETURN_IF_ERROR(CheckDecoder(section("decoder"), "decoder", errors));

  // Special tokens: tokenizer_config.json names them by text.
  json config = json::object();
  const std::filesystem::path config_path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    TESSERA_ASSIGN_OR_RETURN(config, ReadJsonFile(config_path.string()));
    if (!config.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(config_path.string(), ": not an object"));
    }
  }
  const FileErrors config_errors(config_path.string());
  auto id_of = [&](const std::string& text, const char* key) -> absl::StatusOr<int32_t> {
    for (size_t id = parts.texts.size(); id-- > 0;) {
      if (parts.texts[id] == text && parts.types[id] != TokenType::kUnused) {
        return static_cast<int32_t>(id);
      }
    }
    return config_errors.Invalid(key, absl::StrCat("'", text, "' is not in the vocabulary"));
  };
  // Whether a BOS token is prepended is the post-processor's call alone: transformers (5)
  // ignores tokenizer_config.json's add_bos_token when there is a tokenizer.json.
  std::optional<std::string> bos = SpecialTokenText(config, "bos_token");
  const std::optional<std::string> processor_bos = PostProcessorBos(section("post_processor"));
  parts.add_bos = processor_bos.has_value();
  if (processor_bos.has_value()) bos = processor_bos;
  if (bos.has_value()) {
    TESSERA_ASSIGN_OR_RETURN(parts.bos_id, id_of(*bos, "bos_token"));
  }
  if (std::optional<std::string> eos = SpecialTokenText(config, "eos_token")) {
    TESSERA_ASSIGN_OR_RETURN(parts.eos_id, id_of(*eos, "eos_token"));
  }
  TESSERA_RETURN_IF_ERROR(AddEosIds(dir / "generation_config.json", &parts.end_of_generation));
  TESSERA_RETURN_IF_ERROR(AddEosIds(dir / "config.json", &parts.end_of_generation));
  if (parts.eos_id < 0 && !parts.end_of_generation.empty()) {
    parts.eos_id = parts.end_of_generation.front();
  }
  TESSERA_ASSIGN_OR_RETURN(std::string chat_template, ReadChatTemplate(dir, config, config_errors));

  absl::StatusOr<std::unique_ptr<Vocab>> vocab = Vocab::FromParts(std::move(parts));
  if (!vocab.ok()) {
    return absl::Status(vocab.status().code(),
                        absl::StrCat(tokenizer_path, ": ", vocab.status().message()));
  }
  absl::StatusOr<std::unique_ptr<tokenizer_internal::RegexPreTokenizer>> pre_tokenizer =
      tokenizer_internal::RegexPreTokenizer::Create(plan.patterns, nfc);
  if (!pre_tokenizer.ok()) {
    return absl::Status(
        pre_tokenizer.status().code(),
        absl::StrCat(tokenizer_path, ": pre_tokenizer: ", pre_tokenizer.status().message()));
  }
  return std::unique_ptr<Tokenizer>(
      new Tokenizer(*std::move(vocab), *std::move(pre_tokenizer), std::move(chat_template)));
}

}  // namespace tessera::engine
