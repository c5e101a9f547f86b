// Test double for comm::KeyValueStore shared by processes on one host: one file per key in a
// directory. (Real groups meet through the router; this keeps the communicator's own tests
// free of the serving stack.)
#ifndef TESSERA_TESTS_COMM_FILE_STORE_FOR_TEST_H_
#define TESSERA_TESTS_COMM_FILE_STORE_FOR_TEST_H_

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "comm/key_value_store.h"

namespace tessera::comm {

class FileStoreForTest final : public KeyValueStore {
 public:
  explicit FileStoreForTest(std::filesystem::path directory) : directory_(std::move(directory)) {}

  absl::Status Set(absl::string_view key, absl::string_view value) override {
    const std::filesystem::path path = PathOf(key);
    const std::filesystem::path temporary = path.string() + ".partial";
    {
      std::ofstream out(temporary, std::ios::binary);
      out.write(value.data(), static_cast<std::streamsize>(value.size()));
    }
    std::filesystem::rename(temporary, path);  // Readers never see half a value.
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(absl::string_view key, absl::Duration timeout) override {
    const std::filesystem::path path = PathOf(key);
    const absl::Time deadline = absl::Now() + timeout;
    while (!std::filesystem::exists(path)) {
      if (absl::Now() > deadline) return absl::DeadlineExceededError(absl::StrCat("no key ", key));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::ifstream in(path, std::ios::binary);
    std::stringstream contents;
    contents << in.rdbuf();
    return contents.str();
  }

 private:
  std::filesystem::path PathOf(absl::string_view key) const {
    return directory_ / absl::StrReplaceAll(key, {{"/", "_"}});
  }
  const std::filesystem::path directory_;
};

}  // namespace tessera::comm

#endif  // TESSERA_TESTS_COMM_FILE_STORE_FOR_TEST_H_
