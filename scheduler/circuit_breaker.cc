#include "scheduler/circuit_breaker.h"

#include <algorithm>

namespace tessera::scheduler {

bool CircuitBreaker::Allow(TimePoint now) {
  switch (state_) {
    case State::kClosed:
      return true;
    case State::kProbing:
      return false;  // One probe at a time.
    case State::kEjected:
      if (now < ejected_until_) return false;
      state_ = State::kProbing;
      return true;
  }
  return false;
}

void CircuitBreaker::RecordSuccess() {
  state_ = State::kClosed;
  consecutive_failures_ = 0;
  backoff_ = std::chrono::milliseconds(0);
}

void CircuitBreaker::RecordFailure(TimePoint now) {
  ++consecutive_failures_;
  if (state_ == State::kProbing || consecutive_failures_ >= options_.failures_to_eject) {
    backoff_ = backoff_.count() == 0 ? options_.initial_backoff
                                     : std::min(backoff_ * 2, options_.max_backoff);
    state_ = State::kEjected;
    ejected_until_ = now + backoff_;
  }
}

}  // namespace tessera::scheduler
