// Finds stop strings in streamed text. Text that might be the start of a stop string is held
// back until the next piece decides it, so a client never sees part of a stop string.
// Not thread-safe: one per sequence.
#ifndef TESSERA_ENGINE_SAMPLING_STOP_MATCHER_H_
#define TESSERA_ENGINE_SAMPLING_STOP_MATCHER_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tessera::engine {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Adds text; returns the text now safe to emit. After a stop string is found, stopped() is
  // true and the returned text ends just before it.
  std::string Push(absl::string_view text);
  // The held-back text, when generation ends for another reason.
  std::string Flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_SAMPLING_STOP_MATCHER_H_
