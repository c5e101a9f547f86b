#include "scheduler/circuit_breaker.h"

#include <catch2/catch.hpp>

namespace tessera::scheduler {
namespace {

using std::chrono::milliseconds;

TEST_CASE("CircuitBreaker: ejects after consecutive failures and probes back in", "[scheduler]") {
  CircuitBreaker breaker({.failures_to_eject = 3, .initial_backoff = milliseconds(100),
                          .max_backoff = milliseconds(250)});
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  CHECK(breaker.Allow(t0));
  breaker.RecordFailure(t0);
  breaker.RecordFailure(t0);
  CHECK(breaker.Allow(t0));  // Two failures: still in rotation.
  breaker.RecordSuccess();   // A success resets the count.
  breaker.RecordFailure(t0);
  breaker.RecordFailure(t0);
  CHECK(breaker.state() == CircuitBreaker::State::kClosed);
  breaker.RecordFailure(t0);
  CHECK(breaker.state() == CircuitBreaker::State::kEjected);
  CHECK_FALSE(breaker.Allow(t0 + milliseconds(99)));

  SECTION("a successful probe closes it") {
    CHECK(breaker.Allow(t0 + milliseconds(100)));
    CHECK(breaker.state() == CircuitBreaker::State::kProbing);
    CHECK_FALSE(breaker.Allow(t0 + milliseconds(101)));  // Only one probe at a time.
    breaker.RecordSuccess();
    CHECK(breaker.Allow(t0 + milliseconds(102)));
    CHECK(breaker.state() == CircuitBreaker::State::kClosed);
  }
  SECTION("a failed probe ejects again for twice as long, up to the cap") {
    const auto t1 = t0 + milliseconds(100);
    CHECK(breaker.Allow(t1));
    breaker.RecordFailure(t1);
    CHECK_FALSE(breaker.Allow(t1 + milliseconds(199)));
    const auto t2 = t1 + milliseconds(200);
    CHECK(breaker.Allow(t2));
    breaker.RecordFailure(t2);
    CHECK_FALSE(breaker.Allow(t2 + milliseconds(249)));  // Capped at 250, not 400.
    CHECK(breaker.Allow(t2 + milliseconds(250)));
  }
}

}  // namespace
}  // namespace tessera::scheduler
