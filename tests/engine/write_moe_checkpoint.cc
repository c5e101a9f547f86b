// Writes one of the tiny MoE reference checkpoints (tests/data/moe/<name>.json) into a
// directory, with the tiny byte-level tokenizer (tests/data/moe/tiny_tokenizer), so that
// tests outside C++ (the serving tests) can load and serve it like a downloaded checkpoint.
//   write_moe_checkpoint NAME DIR
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/engine/moe_reference_fixture.h"
#include "tests/test_paths.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s NAME DIR (NAME: qwen3_moe_tiny, deepseek_v3_tiny, ...)\n",
                 argv[0]);
    return 2;
  }
  const std::string name = argv[1];
  const std::string dir = argv[2];
  std::ifstream in(tessera::testing::TestDataPath("moe/" + name + ".json"));
  if (!in) {
    std::fprintf(stderr, "no tests/data/moe/%s.json (is TESSERA_SOURCE_DIR set?)\n", name.c_str());
    return 1;
  }
  std::string error;
  if (!tessera::testing::WriteMoeCheckpoint(nlohmann::json::parse(in), dir, error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  const std::filesystem::path tokenizer = tessera::testing::TestDataPath("moe/tiny_tokenizer");
  for (const char* file : {"tokenizer.json", "tokenizer_config.json"}) {
    std::error_code ec;
    std::filesystem::copy_file(tokenizer / file, std::filesystem::path(dir) / file,
                               std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) {
      std::fprintf(stderr, "copying %s: %s\n", file, ec.message().c_str());
      return 1;
    }
  }
  std::printf("%s\n", dir.c_str());
  return 0;
}
