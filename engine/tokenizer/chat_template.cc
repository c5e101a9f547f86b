// ApplyChatTemplate (declared in tokenizer.h). Tessera does not embed a Jinja interpreter:
// it recognizes the template family from its markers and renders that family's layout, taking
// the few parameters (the default system message) from the template text.
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "engine/tokenizer/tokenizer.h"

namespace tessera::engine {
namespace {

constexpr absl::string_view kImStart = "<|im_start|>";
constexpr absl::string_view kImEnd = "<|im_end|>";

// A name for a template Tessera cannot render, for the error message.
std::string DescribeTemplate(absl::string_view chat_template) {
  struct Family {
    absl::string_view marker;
    absl::string_view name;
  };
  static constexpr Family kFamilies[] = {
      {"<|start_header_id|>", "Llama 3"},  {"[INST]", "Llama 2 / Mistral"},
      {"<start_of_turn>", "Gemma"},        {"<|user|>", "Zephyr / Phi-3"},
      {"<｜User｜>", "DeepSeek"},          {"<|START_OF_TURN_TOKEN|>", "Command-R"},
  };
  for (const Family& family : kFamilies) {
    if (absl::StrContains(chat_template, family.marker)) {
      return absl::StrCat("'", family.name, "' (uses ", family.marker, ")");
    }
  }
  constexpr size_t kExcerpt = 60;
  return absl::StrCat("starting \"", absl::CHexEscape(chat_template.substr(0, kExcerpt)),
                      chat_template.size() > kExcerpt ? "...\"" : "\"");
}

// The literal system message the template inserts itself, if it has one: the text between
// "<|im_start|>system" plus a newline (real or escaped) and the next "<|im_end|>", when that
// text is plain (no Jinja expression or string concatenation in it).
std::optional<std::string> FindDefaultSystemMessage(absl::string_view chat_template) {
  const std::string opener = absl::StrCat(kImStart, "system");
  for (size_t at = chat_template.find(opener); at != absl::string_view::npos;
       at = chat_template.find(opener, at + 1)) {
    absl::string_view rest = chat_template.substr(at + opener.size());
    bool escaped = false;
    if (absl::ConsumePrefix(&rest, "\\n")) {
      escaped = true;
    } else if (!absl::ConsumePrefix(&rest, "\n")) {
      continue;
    }
    const size_t end = rest.find(kImEnd);
    if (end == absl::string_view::npos || end == 0) continue;
    const absl::string_view message = rest.substr(0, end);
    bool plain = true;
    for (absl::string_view syntax : {"{{", "{%", "'", "\"", "+"}) {
      if (absl::StrContains(message, syntax)) plain = false;
    }
    if (!plain) continue;
    return escaped ? absl::StrReplaceAll(message, {{"\\n", "\n"}}) : std::string(message);
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::string> ApplyChatTemplate(absl::string_view chat_template,
                                              std::span<const ChatMessage> messages,
                                              bool add_generation_prompt) {
  if (!absl::StrContains(chat_template, kImStart) || !absl::StrContains(chat_template, kImEnd)) {
    return absl::UnimplementedError(
        absl::StrCat("chat template ", DescribeTemplate(chat_template),
                     " is not supported; only the ChatML family (<|im_start|>) is"));
  }
  const std::optional<std::string> default_system = FindDefaultSystemMessage(chat_template);
  std::string out;
  if (default_system.has_value() && !messages.empty() && messages[0].role != "system") {
    absl::StrAppend(&out, kImStart, "system\n", *default_system, kImEnd, "\n");
  }
  for (const ChatMessage& message : messages) {
    absl::StrAppend(&out, kImStart, message.role, "\n", message.content, kImEnd, "\n");
  }
  if (add_generation_prompt) absl::StrAppend(&out, kImStart, "assistant\n");
  return out;
}

absl::StatusOr<std::string> ApplyChatTemplate(const Tokenizer& tokenizer,
                                              std::span<const ChatMessage> messages,
                                              bool add_generation_prompt) {
  if (tokenizer.chat_template().empty()) {
    return absl::NotFoundError("the model has no chat template");
  }
  return ApplyChatTemplate(tokenizer.chat_template(), messages, add_generation_prompt);
}

}  // namespace tessera::engine
