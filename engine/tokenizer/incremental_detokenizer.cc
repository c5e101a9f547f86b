// IncrementalDetokenizer (declared in tokenizer.h). A token can end in the middle of a
// character (byte-level BPE splits rare characters and emoji into byte tokens), so the tail
// of the bytes seen so far is held back while it is still a valid prefix of a sequence.
#include <cstddef>
#include <string>

#include "common/status_macros.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace tessera::engine {

using tokenizer_internal::AppendUtf8;
using tokenizer_internal::kReplacementCharacter;
using tokenizer_internal::ScanUtf8;
using tokenizer_internal::Utf8Scan;

absl::StatusOr<std::string> IncrementalDetokenizer::Push(int32_t id) {
  TESSERA_ASSIGN_OR_RETURN(std::string bytes, tokenizer_.TokenBytes(id));
  pending_ += bytes;
  return Drain(/*at_end=*/false);
}

std::string IncrementalDetokenizer::Flush() { return Drain(/*at_end=*/true); }

std::string IncrementalDetokenizer::Drain(bool at_end) {
  std::string out;
  const absl::string_view pending(pending_);
  size_t pos = 0;
  while (pos < pending.size()) {
    size_t length = 0;
    const Utf8Scan scan = ScanUtf8(pending.substr(pos), &length);
    if (scan == Utf8Scan::kIncomplete) {
      if (!at_end) break;
      AppendUtf8(kReplacementCharacter, &out);
      pos = pending.size();
      break;
    }
    if (scan == Utf8Scan::kComplete) {
      out.append(pending.data() + pos, length);
    } else {
      AppendUtf8(kReplacementCharacter, &out);
    }
    pos += length;
  }
  pending_.erase(0, pos);
  return out;
}

}  // namespace tessera::engine
