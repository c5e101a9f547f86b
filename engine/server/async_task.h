// C++20 coroutines for the router's request path. A request is written as ordinary sequential
// code (call a worker, read its events, retry elsewhere) but never blocks a thread: each wait
// suspends the coroutine, and the gRPC callback that completes the operation resumes it on the
// thread that delivered the completion. This is what keeps the router's per-request cost to
// its own work, without a thread hand-off and context switch per gRPC operation.
//
// AsyncTask<T> is lazy: it starts when awaited, and resumes its awaiter when it returns.
// StartDetached() runs one to completion from non-coroutine code and hands the result to a
// callback.
// Thread-safety: a task runs on one thread at a time, whichever resumed it last.
#ifndef TESSERA_ENGINE_SERVER_ASYNC_TASK_H_
#define TESSERA_ENGINE_SERVER_ASYNC_TASK_H_

#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <utility>

namespace tessera::engine::server {

template <typename T>
class [[nodiscard]] AsyncTask {
 public:
  struct promise_type {
    std::optional<T> value;
    std::coroutine_handle<> continuation;

    AsyncTask get_return_object() {
      return AsyncTask(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct FinalAwaiter {
      bool await_ready() noexcept { return false; }
      // Symmetric transfer to the awaiter: no stack growth however many tasks chain.
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> self) noexcept {
        std::coroutine_handle<> next = self.promise().continuation;
        return next ? next : std::noop_coroutine();
      }
      void await_resume() noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }
    template <typename U>
    void return_value(U&& result) {
      value.emplace(std::forward<U>(result));
    }
    // Code on this path reports errors as statuses; an exception is a bug.
    void unhandled_exception() noexcept { std::terminate(); }
  };

  AsyncTask(AsyncTask&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  AsyncTask& operator=(AsyncTask&&) = delete;
  ~AsyncTask() {
    if (handle_) handle_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiter) noexcept {
    handle_.promise().continuation = awaiter;
    return handle_;
  }
  T await_resume() { return std::move(*handle_.promise().value); }

 private:
  explicit AsyncTask(std::coroutine_handle<promise_type> handle) : handle_(handle) {}
  std::coroutine_handle<promise_type> handle_;
};

namespace internal {

// A coroutine nobody awaits: it starts at once and frees itself when it ends.
struct DetachedCoroutine {
  struct promise_type {
    DetachedCoroutine get_return_object() { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

template <typename T>
DetachedCoroutine RunDetached(AsyncTask<T> task, std::function<void(T)> done) {
  done(co_await task);
}

}  // namespace internal

// Runs `task` until its first wait on this thread, the rest wherever it is resumed; `done`
// gets the result on the thread that finishes it.
template <typename T>
void StartDetached(AsyncTask<T> task, std::function<void(T)> done) {
  internal::RunDetached(std::move(task), std::move(done));
}

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_ASYNC_TASK_H_
