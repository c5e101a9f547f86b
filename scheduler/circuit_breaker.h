// Takes a worker that keeps failing out of rotation and probes it back in: after
// `failures_to_eject` consecutive failures the worker is ejected for a backoff that doubles
// with each ejection (up to a cap); when the backoff ends one probe request is let through,
// and its success closes the breaker while its failure ejects again.
// Pure logic with explicit time; thread-compatible.
#ifndef TESSERA_SCHEDULER_CIRCUIT_BREAKER_H_
#define TESSERA_SCHEDULER_CIRCUIT_BREAKER_H_

#include <chrono>
#include <cstdint>

namespace tessera::scheduler {

struct CircuitBreakerOptions {
  int32_t failures_to_eject = 3;
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{30000};
};

class CircuitBreaker {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  enum class State { kClosed, kEjected, kProbing };

  explicit CircuitBreaker(CircuitBreakerOptions options = {}) : options_(options) {}

  // Whether a request may go to the worker now. In kEjected after the backoff it lets exactly
  // one request through (the probe) and moves to kProbing.
  bool Allow(TimePoint now);
  void RecordSuccess();
  void RecordFailure(TimePoint now);

  State state() const { return state_; }
  int32_t consecutive_failures() const { return consecutive_failures_; }

 private:
  CircuitBreakerOptions options_;
  State state_ = State::kClosed;
  int32_t consecutive_failures_ = 0;
  std::chrono::milliseconds backoff_{0};
  TimePoint ejected_until_{};
};

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_CIRCUIT_BREAKER_H_
