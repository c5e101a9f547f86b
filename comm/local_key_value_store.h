// A KeyValueStore in this process's memory, for groups whose ranks are threads of one process
// (single-host benchmarks, tools). Groups spanning processes meet through the router's store.
// Thread-safety: thread-safe.
#ifndef TESSERA_COMM_LOCAL_KEY_VALUE_STORE_H_
#define TESSERA_COMM_LOCAL_KEY_VALUE_STORE_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "comm/key_value_store.h"

namespace tessera::comm {

class LocalKeyValueStore final : public KeyValueStore {
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
      return absl::DeadlineExceededError(
          absl::StrCat("key ", key, " not set within ", absl::FormatDuration(timeout)));
    }
    return values_.at(key);
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::comm

#endif  // TESSERA_COMM_LOCAL_KEY_VALUE_STORE_H_
