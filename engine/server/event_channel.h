// Carries one request's StreamEvents from the step thread (which pushes them from the
// StepLoop's callback) to the RPC handler thread that streams them to the caller.
// Thread-safety: thread-safe; one producer, one consumer.
#ifndef TESSERA_ENGINE_SERVER_EVENT_CHANNEL_H_
#define TESSERA_ENGINE_SERVER_EVENT_CHANNEL_H_

#include <deque>
#include <memory>
#include <optional>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/runtime/step_loop.h"

namespace tessera::engine::server {

class EventChannel {
 public:
  void Push(const StreamEvent& event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(event);
  }

  // The next event, or nullopt if none arrived within `timeout` (so the caller can check for
  // cancellation and wait again).
  std::optional<StreamEvent> Pop(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto ready = [this] { return !events_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return std::nullopt;
    StreamEvent event = std::move(events_.front());
    events_.pop_front();
    return event;
  }

  // A callback for GenerationRequest::on_event that keeps the channel alive.
  static std::function<void(const StreamEvent&)> Sink(std::shared_ptr<EventChannel> channel) {
    return [channel = std::move(channel)](const StreamEvent& event) { channel->Push(event); };
  }

 private:
  absl::Mutex mu_;
  std::deque<StreamEvent> events_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_EVENT_CHANNEL_H_
