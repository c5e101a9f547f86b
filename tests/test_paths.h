// Paths tests use: the repository's test data, the default model that scripts/setup fetches,
// and a scratch directory for files a test writes. CTest runs tests from the repository root
// and sets TESSERA_SOURCE_DIR.
#ifndef TESSERA_TESTS_TEST_PATHS_H_
#define TESSERA_TESTS_TEST_PATHS_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace tessera::testing {

inline std::string SourceDir() {
  const char* dir = std::getenv("TESSERA_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}

inline std::string TestDataPath(const std::string& relative) {
  return SourceDir() + "/tests/data/" + relative;
}

inline std::string DefaultModelPath() {
  return SourceDir() + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

// A directory of the test binary's own (`name`-pid under the system's temporary directory),
// created on first use and removed with everything in it when the binary exits.
inline const std::filesystem::path& ScratchDir(const std::string& name) {
  struct Scratch {
    std::filesystem::path path;
    ~Scratch() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  };
  static const Scratch scratch{std::filesystem::temp_directory_path() /
                               (name + "-" + std::to_string(getpid()))};
  std::filesystem::create_directories(scratch.path);
  return scratch.path;
}

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_TEST_PATHS_H_
