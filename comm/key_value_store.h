// The rendezvous a group's ranks meet through: each publishes its address under a key and
// reads the others'. Ranks on different hosts share one store that every host can reach
// (Tessera's router serves one); see engine/server for that client.
// Thread-safety: implementations are thread-safe.
#ifndef TESSERA_COMM_KEY_VALUE_STORE_H_
#define TESSERA_COMM_KEY_VALUE_STORE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tessera::comm {

class KeyValueStore {
 public:
  virtual ~KeyValueStore() = default;

  virtual absl::Status Set(absl::string_view key, absl::string_view value) = 0;
  // The value of `key`, waiting up to `timeout` for it to be set (DeadlineExceeded after).
  virtual absl::StatusOr<std::string> Get(absl::string_view key, absl::Duration timeout) = 0;
};

}  // namespace tessera::comm

#endif  // TESSERA_COMM_KEY_VALUE_STORE_H_
