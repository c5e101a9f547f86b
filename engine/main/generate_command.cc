#include "engine/main/generate_command.h"

#include <cstdio>
#include <thread>

#include "engine/runtime/loaded_model.h"
#include "engine/runtime/step_loop.h"
#include "nlohmann/json.hpp"

namespace tessera::engine {

GenerateCommand::GenerateCommand(CLI::App& app) {
  command_ = app.add_subcommand("generate", "Generate text from a prompt on this machine");
  model_path_ = DefaultModelPath();
  command_->add_option("--model", model_path_,
                       "GGUF model file or Hugging Face checkpoint directory (default: the "
                       "default model)")
      ->check(CLI::ExistingPath);
  command_->add_option("--prompt", prompt_, "Prompt text")->required();
  command_->add_flag("--chat", chat_, "Wrap the prompt in the model's chat template");
  command_->add_option("--system", system_, "System message (with --chat)");
  command_->add_option("--max-tokens", sampling_.max_tokens, "Tokens to generate at most");
  command_->add_option("--temperature", sampling_.temperature, "0 for greedy");
  command_->add_option("--top-k", sampling_.top_k, "Keep the k most likely tokens (0: off)");
  command_->add_option("--top-p", sampling_.top_p, "Nucleus sampling mass, in (0, 1]");
  command_->add_option("--min-p", sampling_.min_p,
                       "Drop tokens below min-p times the top probability");
  command_->add_option("--repetition-penalty", sampling_.repetition_penalty,
                       "> 1 discourages repeats");
  command_->add_option("--frequency-penalty", sampling_.frequency_penalty, "In [-2, 2]");
  command_->add_option("--presence-penalty", sampling_.presence_penalty, "In [-2, 2]");
  command_->add_option("--seed", seed_, "Random seed (same seed, same text)")
      ->check(CLI::NonNegativeNumber);
  command_->add_option("--stop", sampling_.stop, "Stop before this string (repeatable)");
  command_->add_flag("--ignore-eos", sampling_.ignore_eos, "Keep generating past end-of-sequence");
  command_
      ->add_option("--ffn-experts", ffn_experts_,
                   "Run each FFN as this many experts (the computation an expert-parallel "
                   "worker does; 0: dense)")
      ->check(CLI::Range(0, 4096));
  command_->add_option("--threads", threads_, "Compute threads (default: one per core)")
      ->check(CLI::Range(0, 1024));
  command_->add_option("--block-size", block_size_, "Tokens per KV cache block")
      ->check(CLI::Range(1, 4096));
  command_->add_flag("--json", json_,
                     "Print one JSON object (text, token_ids, finish_reason) instead of streaming");
}

int GenerateCommand::Run() {
  if (seed_ >= 0) sampling_.seed = static_cast<uint64_t>(seed_);
  if (absl::Status s = ValidateSamplingParams(sampling_); !s.ok()) {
    std::fprintf(stderr, "tessera generate: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  absl::StatusOr<LoadedModel> loaded =
      LoadedModel::Load(model_path_, threads_, ModelOptions{.ffn_experts = ffn_experts_});
  if (!loaded.ok()) {
    std::fprintf(stderr, "tessera generate: %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  std::string text = prompt_;
  if (chat_) {
    std::vector<ChatMessage> messages;
    if (!system_.empty()) messages.push_back({"system", system_});
    messages.push_back({"user", prompt_});
    absl::StatusOr<std::string> templated = ApplyChatTemplate(*loaded->tokenizer, messages, true);
    if (!templated.ok()) {
      std::fprintf(stderr, "tessera generate: %s\n", templated.status().ToString().c_str());
      return 1;
    }
    text = *templated;
  }
  StepLoopOptions options;
  options.block_size = block_size_;
  options.planner.max_sequences_per_step = 1;
  absl::StatusOr<std::unique_ptr<StepLoop>> loop =
      StepLoop::Create(*loaded->model, *loaded->tokenizer, options);
  if (!loop.ok()) {
    std::fprintf(stderr, "tessera generate: %s\n", loop.status().ToString().c_str());
    return 1;
  }
  Usage usage;
  FinishReason finish = FinishReason::kNone;
  absl::Status error;
  GenerationRequest request;
  request.prompt = loaded->tokenizer->Encode(text, /*parse_special=*/chat_);
  request.sampling = sampling_;
  std::string all_text;
  std::vector<int32_t> token_ids;
  request.on_event = [&](const StreamEvent& event) {
    token_ids.insert(token_ids.end(), event.token_ids.begin(), event.token_ids.end());
    if (json_) {
      all_text += event.text;
    } else {
      std::fwrite(event.text.data(), 1, event.text.size(), stdout);
      std::fflush(stdout);
    }
    if (event.finish_reason != FinishReason::kNone) {
      usage = event.usage;
      finish = event.finish_reason;
      error = event.error;
    }
  };
  if (absl::StatusOr<int64_t> id = (*loop)->Add(std::move(request)); !id.ok()) {
    std::fprintf(stderr, "tessera generate: %s\n", std::string(id.status().message()).c_str());
    return 2;
  }
  while ((*loop)->HasWork()) {
    if (absl::Status s = (*loop)->Step(); !s.ok()) {
      std::fprintf(stderr, "\ntessera generate: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  if (json_) {
    nlohmann::json out = {{"text", all_text},
                          {"token_ids", token_ids},
                          {"finish_reason", std::string(FinishReasonName(finish))},
                          {"prompt_tokens", usage.prompt_tokens}};
    std::printf("%s", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  std::printf("\n");
  std::fflush(stdout);  // The text ends before the statistics on stderr start.
  if (finish == FinishReason::kError) {
    std::fprintf(stderr, "tessera generate: %s\n", error.ToString().c_str());
    return 1;
  }
  const int decoded = usage.completion_tokens - 1;  // The first token comes from the prefill.
  std::fprintf(
      stderr,
      "[finish: %s] prompt: %d tokens, %.1f tokens/s | generation: %d tokens, %.1f tokens/s\n",
      std::string(FinishReasonName(finish)).c_str(), usage.prompt_tokens,
      usage.prefill_ms > 0 ? usage.prompt_tokens / (usage.prefill_ms / 1e3) : 0.0,
      usage.completion_tokens,
      usage.decode_ms > 0 && decoded > 0 ? decoded / (usage.decode_ms / 1e3) : 0.0);
  return 0;
}

}  // namespace tessera::engine
