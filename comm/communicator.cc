#include "comm/communicator.h"

#include "absl/strings/str_cat.h"

namespace tessera::comm {
namespace {

absl::Status ValidateCounts(absl::string_view name, int group_size, size_t bytes,
                            std::span<const int64_t> counts) {
  if (static_cast<int>(counts.size()) != group_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " has ", counts.size(), " entries; the group has ", group_size, " ranks"));
  }
  int64_t total = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, "[", i, "] is negative (", counts[i], ")"));
    }
    total += counts[i];
  }
  if (static_cast<size_t>(total) != bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " sum to ", total, " bytes but the buffer holds ", bytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateAllToAllV(int group_size, size_t send_bytes,
                               std::span<const int64_t> send_counts, size_t recv_bytes,
                               std::span<const int64_t> recv_counts) {
  if (absl::Status s = ValidateCounts("send_counts", group_size, send_bytes, send_counts);
      !s.ok()) {
    return s;
  }
  return ValidateCounts("recv_counts", group_size, recv_bytes, recv_counts);
}

}  // namespace tessera::comm
