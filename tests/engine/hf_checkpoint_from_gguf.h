// Test data built from the default model's GGUF file in the formats of a Hugging Face
// checkpoint: a tokenizer.json (one of the reference configurations of
// tests/data/tokenizer/hf_styles.json, with the GGUF's vocabulary and merges), and a whole
// checkpoint directory (config.json, the dequantized weights as F32 safetensors under their
// Hugging Face names, tokenizer.json and tokenizer_config.json), which is what a Llama-family
// checkpoint on the Hub looks like.
#ifndef TESSERA_TESTS_ENGINE_HF_CHECKPOINT_FROM_GGUF_H_
#define TESSERA_TESTS_ENGINE_HF_CHECKPOINT_FROM_GGUF_H_

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/gguf/gguf_file.h"
#include "kernels/dequantize.h"
#include "tests/test_paths.h"

namespace tessera::testing {

// tokenizer.json of `style` ("smollm2", "qwen2", "deepseek_v3", "llama3") over `file`'s
// vocabulary and merges.
inline absl::StatusOr<nlohmann::json> TokenizerJsonFromGguf(const engine::GgufFile& file,
                                                           const std::string& style) {
  std::ifstream in(TestDataPath("tokenizer/hf_styles.json"));
  if (!in) return absl::NotFoundError("missing tests/data/tokenizer/hf_styles.json");
  nlohmann::json doc = nlohmann::json::parse(in)["styles"][style]["template"];
  auto tokens = file.GetStringArray("tokenizer.ggml.tokens");
  auto merges = file.GetStringArray("tokenizer.ggml.merges");
  if (!tokens.ok()) return tokens.status();
  if (!merges.ok()) return merges.status();
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < tokens->size(); ++i) vocab[(*tokens)[i]] = i;
  doc["model"]["vocab"] = std::move(vocab);
  doc["model"]["merges"] = std::vector<std::string>(merges->begin(), merges->end());
  return doc;
}

// Writes the default model (a Llama-architecture GGUF) into `dir` as a Hugging Face Llama
// checkpoint. llama.cpp's converter reorders each head's Q and K rows for its interleaved
// rotary layout; they are put back in Hugging Face's half-split order.
inline absl::Status WriteHfCheckpointFromGguf(const engine::GgufFile& file,
                                              const std::string& dir) {
  std::filesystem::create_directories(dir);
  auto get_int = [&](const char* key) { return file.GetInt(absl::StrCat("llama.", key)); };
  auto heads = get_int("attention.head_count");
  auto kv_heads = get_int("attention.head_count_kv");
  auto hidden = get_int("embedding_length");
  auto layers = get_int("block_count");
  auto inter = get_int("feed_forward_length");
  auto context = get_int("context_length");
  auto theta = file.GetFloat("llama.rope.freq_base");
  auto eps = file.GetFloat("llama.attention.layer_norm_rms_epsilon");
  for (const absl::Status& s : {heads.status(), kv_heads.status(), hidden.status(),
                                layers.status(), inter.status(), context.status(),
                                theta.status(), eps.status()}) {
    if (!s.ok()) return s;
  }
  auto tokens = file.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return tokens.status();
  const nlohmann::json config = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
      {"hidden_size", *hidden}, {"intermediate_size", *inter},
      {"num_hidden_layers", *layers}, {"num_attention_heads", *heads},
      {"num_key_value_heads", *kv_heads}, {"vocab_size", tokens->size()},
      {"max_position_embeddings", *context}, {"rope_theta", *theta},
      {"rms_norm_eps", *eps}, {"tie_word_embeddings", !file.FindTensor("output.weight")},
      {"hidden_act", "silu"}};
  std::ofstream(dir + "/config.json") << config.dump(1);

  auto tokenizer = TokenizerJsonFromGguf(file, "smollm2");
  if (!tokenizer.ok()) return tokenizer.status();
  std::ofstream(dir + "/tokenizer.json") << tokenizer->dump();
  nlohmann::json tokenizer_config = {{"eos_token", "<|im_end|>"}};
  if (auto chat = file.GetString("tokenizer.chat_template"); chat.ok()) {
    tokenizer_config["chat_template"] = *chat;
  }
  std::ofstream(dir + "/tokenizer_config.json") << tokenizer_config.dump(1);

  // GGUF name -> Hugging Face name, with the heads to un-permute (0: none).
  auto hf_name = [&](const std::string& name, int64_t* permute_heads) -> std::string {
    *permute_heads = 0;
    if (name == "token_embd.weight") return "model.embed_tokens.weight";
    if (name == "output_norm.weight") return "model.norm.weight";
    if (name == "output.weight") return "lm_head.weight";
    const size_t dot = name.find('.', 4);
    const std::string layer = name.substr(4, dot - 4), rest = name.substr(dot + 1);
    const std::string p = absl::StrCat("model.layers.", layer, ".");
    if (rest == "attn_norm.weight") return p + "input_layernorm.weight";
    if (rest == "ffn_norm.weight") return p + "post_attention_layernorm.weight";
    if (rest == "attn_q.weight") *permute_heads = *heads;
    if (rest == "attn_k.weight") *permute_heads = *kv_heads;
    if (rest == "attn_q.weight") return p + "self_attn.q_proj.weight";
    if (rest == "attn_k.weight") return p + "self_attn.k_proj.weight";
    if (rest == "attn_v.weight") return p + "self_attn.v_proj.weight";
    if (rest == "attn_output.weight") return p + "self_attn.o_proj.weight";
    if (rest == "ffn_gate.weight") return p + "mlp.gate_proj.weight";
    if (rest == "ffn_up.weight") return p + "mlp.up_proj.weight";
    if (rest == "ffn_down.weight") return p + "mlp.down_proj.weight";
    return "";
  };
  nlohmann::json header = nlohmann::json::object();
  std::vector<std::vector<float>> data;
  uint64_t offset = 0;
  for (const engine::GgufTensor& t : file.tensors()) {
    int64_t permute_heads = 0;
    const std::string name = hf_name(t.name, &permute_heads);
    if (name.empty()) return absl::InvalidArgumentError("unexpected tensor " + t.name);
    const int64_t cols = t.shape[0], rows = t.rows();
    std::vector<float> values(static_cast<size_t>(rows * cols));
    const int64_t row_bytes = kernels::RowBytes(t.type, cols);
    for (int64_t r = 0; r < rows; ++r) {
      // Row r of the GGUF tensor; in Hugging Face order, head h's row a * half + j is GGUF's
      // row 2 * j + a.
      int64_t out_row = r;
      if (permute_heads > 0) {
        const int64_t head_dim = rows / permute_heads, half = head_dim / 2;
        const int64_t h = r / head_dim, i = r % head_dim;
        out_row = h * head_dim + (i % 2) * half + i / 2;
      }
      kernels::DequantizeRow(t.type, t.data.data() + r * row_bytes, cols,
                             values.data() + out_row * cols);
    }
    const uint64_t bytes = values.size() * sizeof(float);
    const std::vector<int64_t> shape =
        t.shape.size() == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(std::move(values));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::ofstream out(dir + "/model.safetensors", std::ios::binary | std::ios::trunc);
  const uint64_t length = text.size();
  out.write(reinterpret_cast<const char*>(&length), 8);  // Little-endian, as on x86.
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const std::vector<float>& values : data) {
    out.write(reinterpret_cast<const char*>(values.data()),
              static_cast<std::streamsize>(values.size() * sizeof(float)));
  }
  out.close();
  return out ? absl::OkStatus() : absl::UnavailableError("writing " + dir + " failed");
}

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_ENGINE_HF_CHECKPOINT_FROM_GGUF_H_
