// Text <-> token ids for the models Tessera serves, matching llama.cpp token for token.
//
// Tokenizer: byte-level BPE, from a GGUF file ("gpt2" vocabularies with the pre-tokenizer the
// file names in tokenizer.ggml.pre, currently "smollm") or from a Hugging Face checkpoint's
// tokenizer.json (see FromHuggingFace); control tokens can be matched in the text.
// ApplyChatTemplate: renders a conversation with the model's chat template (ChatML family).
// IncrementalDetokenizer: turns a stream of generated ids into text chunks that are always
// whole UTF-8.
//
// Thread safety: a Tokenizer is immutable once built and safe to share between threads.
// ApplyChatTemplate is stateless. An IncrementalDetokenizer belongs to one sequence and is not
// thread-safe; its Tokenizer must outlive it.
#ifndef TESSERA_ENGINE_TOKENIZER_TOKENIZER_H_
#define TESSERA_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/gguf/gguf_file.h"

namespace tessera::engine {

namespace tokenizer_internal {
class PreTokenizer;
class Vocab;
}  // namespace tokenizer_internal

class Tokenizer {
 public:
  // Builds the tokenizer described by the file's tokenizer.* metadata. InvalidArgument when
  // tokenizer.ggml.model is not "gpt2", tokenizer.ggml.pre is not a supported pre-tokenizer,
  // or the vocabulary metadata is missing or malformed.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& file);

  // Builds the tokenizer of a Hugging Face checkpoint directory, encoding as the `tokenizers`
  // library does:
  //   tokenizer.json         a byte-level BPE model; its added tokens (special ones become
  //                          control tokens); normalizer none or NFC; pre-tokenizer steps
  //                          ByteLevel, Split (Isolated) and Digits, alone or in a Sequence;
  //                          a TemplateProcessing post-processor that prepends a BOS token.
  //   tokenizer_config.json  (optional) bos_token, eos_token, chat_template (a
  //                          chat_template.jinja beside it wins, as in transformers; and as
  //                          in transformers 5, the post-processor alone decides on a BOS).
  //   generation_config.json, config.json  (optional) eos_token_id: more end-of-generation ids.
  // Added tokens' lstrip, rstrip and single_word options are not applied. Unimplemented
  // names any other model, normalizer or pre-tokenizer type; InvalidArgument names the file and
  // field that is malformed.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromHuggingFace(const std::string& directory);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text` (any bytes; invalid UTF-8 is handled as llama.cpp does, becoming
  // U+FFFD). With `parse_special`, control tokens spelled in the text ("<|im_start|>") become
  // those tokens; user-defined tokens always do. Prepends BOS only when the file sets
  // tokenizer.ggml.add_bos_token (SmolLM2 does not).
  std::vector<int32_t> Encode(absl::string_view text, bool parse_special) const;

  // The bytes of the ids concatenated (control tokens as their text). The result is valid
  // UTF-8 when the ids came from Encode, but need not be for arbitrary id sequences; use
  // IncrementalDetokenizer for display. InvalidArgument names the first out-of-range id and
  // its index.
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids) const;

  // The raw bytes of one token (control tokens as their text). InvalidArgument if out of range.
  absl::StatusOr<std::string> TokenBytes(int32_t id) const;

  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;

  // Whether generating `id` ends the sequence: EOS and the tokens llama.cpp adds by text
  // (for SmolLM2: <|endoftext|>, <|im_end|> and <reponame>). False for out-of-range ids.
  bool IsEndOfGeneration(int32_t id) const;

  // The token spelled exactly `text` in the vocabulary ("<|im_end|>"; normal tokens in
  // byte-level form, e.g. "Ġthe" for " the"), if any.
  std::optional<int32_t> FindToken(absl::string_view text) const;

  // The model's chat template (Jinja source), empty when it has none.
  const std::string& chat_template() const { return chat_template_; }

 private:
  Tokenizer(std::unique_ptr<const tokenizer_internal::Vocab> vocab,
            std::unique_ptr<const tokenizer_internal::PreTokenizer> pre_tokenizer,
            std::string chat_template);
  void EncodeText(absl::string_view text, std::vector<int32_t>* out) const;

  std::unique_ptr<const tokenizer_internal::Vocab> vocab_;
  std::unique_ptr<const tokenizer_internal::PreTokenizer> pre_tokenizer_;
  std::string chat_template_;
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant".
  std::string content;
};

// Renders `messages` with a chat template in the ChatML family (recognized by its
// <|im_start|> and <|im_end|> markers):
//   [<|im_start|>system\n{default system message}<|im_end|>\n]   (see below)
//   <|im_start|>{role}\n{content}<|im_end|>\n                     (each message)
//   [<|im_start|>assistant\n]                                      (add_generation_prompt)
// The default system message is taken from the template when it inserts one before a first
// message that is not a system message (SmolLM2's does). The result is meant to be encoded
// with parse_special = true. Unimplemented, naming the template, for other families.
absl::StatusOr<std::string> ApplyChatTemplate(absl::string_view chat_template,
                                              std::span<const ChatMessage> messages,
                                              bool add_generation_prompt);
// The same with the tokenizer's chat template; NotFound if it has none.
absl::StatusOr<std::string> ApplyChatTemplate(const Tokenizer& tokenizer,
                                              std::span<const ChatMessage> messages,
                                              bool add_generation_prompt);

// Streams detokenized text: Push() returns the text each new token completes. Bytes of a
// character split across tokens are held back until it is complete; bytes proven invalid
// (they can start or continue no well-formed sequence) become U+FFFD, one per maximal
// ill-formed subsequence. Every returned chunk is valid UTF-8, and for ids whose Decode() is
// valid UTF-8, the chunks of Push() and Flush() concatenate to exactly Decode().
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

  // Text completed by `id` (may be empty). InvalidArgument for an out-of-range id, which
  // leaves the state unchanged.
  absl::StatusOr<std::string> Push(int32_t id);

  // Whatever is held back (an incomplete sequence becomes U+FFFD); resets the state.
  std::string Flush();

 private:
  std::string Drain(bool at_end);

  const Tokenizer& tokenizer_;
  std::string pending_;  // Bytes not yet returned: at most an incomplete sequence.
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_TOKENIZER_TOKENIZER_H_
