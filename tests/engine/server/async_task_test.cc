#include "engine/server/async_task.h"

#include <catch2/catch.hpp>
#include <coroutine>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"

namespace tessera::engine::server {
namespace {

// A test double for a gRPC completion: the awaiting coroutine suspends until Resume() is
// called (from this thread or another), and gets the value passed.
class ManualCompletion {
 public:
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> waiter) { waiter_ = waiter; }
  int await_resume() const noexcept { return value_; }
  bool waiting() const { return static_cast<bool>(waiter_); }
  void Resume(int value) {
    value_ = value;
    std::exchange(waiter_, {}).resume();
  }

 private:
  std::coroutine_handle<> waiter_;
  int value_ = 0;
};

AsyncTask<int> Immediate(int value) { co_return value; }

AsyncTask<int> SumOfImmediates(int n) {
  int sum = 0;
  for (int i = 0; i < n; ++i) sum += co_await Immediate(1);
  co_return sum;
}

AsyncTask<int> Doubled(ManualCompletion& completion) {
  int value = co_await completion;
  co_return 2 * value;
}

AsyncTask<absl::Status> Outer(ManualCompletion& first, ManualCompletion& second) {
  int a = co_await Doubled(first);
  int b = co_await Doubled(second);
  if (a + b != 10) co_return absl::InternalError("unexpected sum");
  co_return absl::OkStatus();
}

TEST_CASE("AsyncTask: a lazy task runs when awaited and returns its value", "[server][async]") {
  std::optional<int> result;
  StartDetached<int>(SumOfImmediates(3), [&](int value) { result = value; });
  REQUIRE(result.has_value());
  CHECK(*result == 3);
}

TEST_CASE("AsyncTask: many tasks that complete at once, awaited in a loop", "[server][async]") {
  std::optional<int> result;
  StartDetached<int>(SumOfImmediates(10'000), [&](int value) { result = value; });
  REQUIRE(result.has_value());
  CHECK(*result == 10'000);
}

TEST_CASE("AsyncTask: a task suspended on a completion resumes where it is completed",
          "[server][async]") {
  ManualCompletion first;
  ManualCompletion second;
  std::optional<absl::Status> result;
  StartDetached<absl::Status>(Outer(first, second), [&](absl::Status status) { result = status; });
  // Suspended on the first completion: nothing has finished.
  CHECK(first.waiting());
  CHECK_FALSE(second.waiting());
  CHECK_FALSE(result.has_value());

  first.Resume(2);  // On this thread: runs on to the second wait.
  CHECK(second.waiting());
  CHECK_FALSE(result.has_value());

  std::thread::id finished_on;
  std::thread other([&] {
    second.Resume(3);
    finished_on = std::this_thread::get_id();
  });
  other.join();
  REQUIRE(result.has_value());
  CHECK(result->ok());
  CHECK(finished_on != std::thread::id());
}

TEST_CASE("AsyncTask: the result reaches the callback on the completing thread",
          "[server][async]") {
  ManualCompletion first;
  ManualCompletion second;
  std::thread::id callback_thread;
  std::optional<absl::Status> result;
  StartDetached<absl::Status>(Outer(first, second), [&](absl::Status status) {
    callback_thread = std::this_thread::get_id();
    result = status;
  });
  first.Resume(1);
  std::thread::id completer;
  std::thread other([&] {
    completer = std::this_thread::get_id();
    second.Resume(1);  // 2 + 2 != 10.
  });
  other.join();
  REQUIRE(result.has_value());
  CHECK(result->code() == absl::StatusCode::kInternal);
  CHECK(callback_thread == completer);
}

}  // namespace
}  // namespace tessera::engine::server
