#include "comm/gloo_communicator.h"

#include <gloo/allreduce.h>
#include <gloo/alltoallv.h>
#include <gloo/barrier.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <signal.h>

#include <exception>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tessera::comm {
namespace {

std::chrono::milliseconds ToMilliseconds(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// Gloo's rendezvous interface over a KeyValueStore, under the group's prefix. Gloo expects
// failures as exceptions; Connect() turns them back into a status.
class StoreAdapter final : public gloo::rendezvous::Store {
 public:
  StoreAdapter(KeyValueStore& store, std::string prefix, absl::Duration timeout)
      : store_(store), prefix_(std::move(prefix)), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    absl::Status status = store_.Set(prefix_ + key, absl::string_view(data.data(), data.size()));
    if (!status.ok()) throw gloo::IoException(std::string(status.message()));
  }
  std::vector<char> get(const std::string& key) override {
    absl::StatusOr<std::string> value = store_.Get(prefix_ + key, timeout_);
    if (!value.ok()) throw gloo::IoException(std::string(value.status().message()));
    return std::vector<char>(value->begin(), value->end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, ToMilliseconds(timeout_)); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    for (const std::string& key : keys) {
      absl::StatusOr<std::string> value = store_.Get(prefix_ + key, absl::FromChrono(timeout));
      if (!value.ok()) throw gloo::IoException(std::string(value.status().message()));
    }
  }

 private:
  KeyValueStore& store_;
  const std::string prefix_;
  const absl::Duration timeout_;
};

// Gloo's TCP transport writes to its sockets without MSG_NOSIGNAL, so a write to a rank that
// just died raises SIGPIPE, whose default action kills this process. A dead peer must cost an
// error, not the survivors: ignore SIGPIPE (unless the program already handles it).
void IgnoreSigpipeOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      signal(SIGPIPE, SIG_IGN);
    }
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<GlooCommunicator>> GlooCommunicator::Connect(
    KeyValueStore& store, absl::string_view group, int rank, int size, const GlooOptions& options) {
  if (size < 1) return absl::InvalidArgumentError(absl::StrCat("group size ", size, " < 1"));
  if (rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside the group of ", size));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the group timeout must be positive");
  }
  IgnoreSigpipeOnce();
  try {
    gloo::transport::tcp::attr attr(options.hostname.c_str());
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(rank, size);
    context->setTimeout(ToMilliseconds(options.timeout));
    StoreAdapter adapter(store, absl::StrCat(group, "/"), options.timeout);
    context->connectFullMesh(adapter, device);
    return std::unique_ptr<GlooCommunicator>(
        new GlooCommunicator(std::move(context), std::string(group), rank, size, options.timeout));
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("rank ", rank, " of ", size, " could not join group ", group, ": ", e.what()));
  }
}

GlooCommunicator::GlooCommunicator(std::shared_ptr<gloo::Context> context, std::string group,
                                   int rank, int size, absl::Duration timeout)
    : context_(std::move(context)),
      group_(std::move(group)),
      rank_(rank),
      size_(size),
      timeout_(timeout) {}

GlooCommunicator::~GlooCommunicator() = default;

template <typename Body>
absl::Status GlooCommunicator::Run(absl::string_view what, Body body) {
  if (!broken_.ok()) return broken_;
  try {
    body();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    // The peers may be anywhere in the exchange: nothing later can be trusted.
    broken_ = absl::UnavailableError(absl::StrCat(what, " failed on rank ", rank_, " of ", size_,
                                                  " in group ", group_,
                                                  " (a peer died, or did not take part within ",
                                                  absl::FormatDuration(timeout_), "): ", e.what()));
    return broken_;
  }
}

absl::Status GlooCommunicator::AllToAllV(std::span<const std::byte> send,
                                         std::span<const int64_t> send_counts,
                                         std::span<std::byte> recv,
                                         std::span<const int64_t> recv_counts) {
  if (absl::Status s = ValidateAllToAllV(size_, send.size(), send_counts, recv.size(), recv_counts);
      !s.ok()) {
    return s;
  }
  // Gloo needs real buffers even when nothing moves.
  char empty_send = 0;
  char empty_recv = 0;
  char* send_ptr =
      send.empty() ? &empty_send : reinterpret_cast<char*>(const_cast<std::byte*>(send.data()));
  char* recv_ptr = recv.empty() ? &empty_recv : reinterpret_cast<char*>(recv.data());
  return Run("all-to-all", [&] {
    gloo::AlltoallvOptions options(context_);
    options.setInput(send_ptr, std::vector<int64_t>(send_counts.begin(), send_counts.end()));
    options.setOutput(recv_ptr, std::vector<int64_t>(recv_counts.begin(), recv_counts.end()));
    options.setTag(next_tag_++);
    options.setTimeout(ToMilliseconds(timeout_));
    gloo::alltoallv(options);
  });
}

namespace {

template <typename T>
void AllReduceSumImpl(const std::shared_ptr<gloo::Context>& context, std::span<T> values,
                      uint32_t tag, std::chrono::milliseconds timeout) {
  gloo::AllreduceOptions options(context);
  options.setOutput(values.data(), values.size());
  options.setReduceFunction(
      static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
  options.setTag(tag);
  options.setTimeout(timeout);
  gloo::allreduce(options);
}

}  // namespace

absl::Status GlooCommunicator::AllReduceSum(std::span<int64_t> values) {
  if (values.empty()) return Barrier();
  return Run("all-reduce",
             [&] { AllReduceSumImpl(context_, values, next_tag_++, ToMilliseconds(timeout_)); });
}

absl::Status GlooCommunicator::AllReduceSum(std::span<float> values) {
  if (values.empty()) return Barrier();
  return Run("all-reduce",
             [&] { AllReduceSumImpl(context_, values, next_tag_++, ToMilliseconds(timeout_)); });
}

absl::Status GlooCommunicator::Barrier() {
  return Run("barrier", [&] {
    gloo::BarrierOptions options(context_);
    options.setTag(next_tag_++);
    options.setTimeout(ToMilliseconds(timeout_));
    gloo::barrier(options);
  });
}

}  // namespace tessera::comm
