// Paths tests read: the repository's test data and the default model that scripts/setup
// fetches. CTest runs tests from the repository root and sets TESSERA_SOURCE_DIR.
#ifndef TESSERA_TESTS_TEST_PATHS_H_
#define TESSERA_TESTS_TEST_PATHS_H_

#include <cstdlib>
#include <string>

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

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_TEST_PATHS_H_
