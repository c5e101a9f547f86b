// Encoding throughput of Tessera's tokenizers: the GGUF tokenizer (hand-written SmolLM2 pre-
// tokenizer) and tokenizers loaded from tokenizer.json directories (RE2 pre-tokenizer), over
// the same texts. scripts/reference/bench_tokenizers runs it beside the `tokenizers` library.
//
//   tokenizer_benchmark --texts FILE [--gguf FILE] [--hf NAME=DIR]... [benchmark flags]
// FILE holds {"texts": [...]} (tests/data/tokenizer/hf_styles.json does).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/gguf/gguf_file.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

using tessera::engine::Tokenizer;

void EncodeAll(benchmark::State& state, const Tokenizer* tokenizer,
               const std::vector<std::string>* texts) {
  int64_t bytes = 0;
  int64_t tokens = 0;
  for (auto _ : state) {
    for (const std::string& text : *texts) {
      std::vector<int32_t> ids = tokenizer->Encode(text, /*parse_special=*/true);
      tokens += static_cast<int64_t>(ids.size());
      bytes += static_cast<int64_t>(text.size());
      benchmark::DoNotOptimize(ids.data());
    }
  }
  state.SetBytesProcessed(bytes);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "tokenizer_benchmark: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::string texts_path;
  std::string gguf_path;
  std::vector<std::pair<std::string, std::string>> hf_dirs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return Fail("flag " + arg + " needs a value");
    if (arg == "--texts") {
      texts_path = argv[++i];
    } else if (arg == "--gguf") {
      gguf_path = argv[++i];
    } else if (arg == "--hf") {
      const std::string spec = argv[++i];
      const size_t eq = spec.find('=');
      if (eq == std::string::npos) return Fail("--hf takes NAME=DIR, got " + spec);
      hf_dirs.emplace_back(spec.substr(0, eq), spec.substr(eq + 1));
    } else {
      return Fail("unknown flag " + arg);
    }
  }
  if (texts_path.empty()) return Fail("--texts FILE is required");
  std::ifstream in(texts_path);
  if (!in) return Fail("cannot open " + texts_path);
  auto* texts = new std::vector<std::string>(
      nlohmann::json::parse(in)["texts"].get<std::vector<std::string>>());

  std::vector<std::unique_ptr<Tokenizer>> tokenizers;
  std::unique_ptr<tessera::engine::GgufFile> gguf;
  if (!gguf_path.empty()) {
    auto file = tessera::engine::GgufFile::Open(gguf_path);
    if (!file.ok()) return Fail(file.status().ToString());
    auto tokenizer = Tokenizer::FromGguf(**file);
    if (!tokenizer.ok()) return Fail(tokenizer.status().ToString());
    tokenizers.push_back(*std::move(tokenizer));
    benchmark::RegisterBenchmark("Encode/gguf", EncodeAll, tokenizers.back().get(), texts);
  }
  for (const auto& [name, dir] : hf_dirs) {
    auto tokenizer = Tokenizer::FromHuggingFace(dir);
    if (!tokenizer.ok()) return Fail(tokenizer.status().ToString());
    tokenizers.push_back(*std::move(tokenizer));
    benchmark::RegisterBenchmark(("Encode/json_" + name).c_str(), EncodeAll,
                                 tokenizers.back().get(), texts);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
