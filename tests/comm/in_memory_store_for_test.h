// Test double for comm::KeyValueStore: a map in this process, for ranks run as threads.
#ifndef TESSERA_TESTS_COMM_IN_MEMORY_STORE_FOR_TEST_H_
#define TESSERA_TESTS_COMM_IN_MEMORY_STORE_FOR_TEST_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "comm/key_value_store.h"

namespace tessera::comm {

class InMemoryStoreForTest final : public KeyValueStore {
 public:
  absl::Status Set(absl::string_view key, absl::string_view value) override {
    absl::MutexLock lock(&mu_);
    values_[key] = std::string(value);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(absl::string_view key, absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    auto present = [&] { return values_.contains(key); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&present), timeout)) {
      return absl::DeadlineExceededError(absl::StrCat("no key ", key));
    }
    return values_.at(key);
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::comm

#endif  // TESSERA_TESTS_COMM_IN_MEMORY_STORE_FOR_TEST_H_
