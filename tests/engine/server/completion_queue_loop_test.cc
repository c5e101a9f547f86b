#include "engine/server/completion_queue_loop.h"

#include <grpcpp/alarm.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tessera::engine::server {
namespace {

// Records, for each completion, whether it succeeded, the thread that ran it and the queue
// that thread gives new calls.
class Recorder {
 public:
  void Fired(bool ok) {
    absl::MutexLock lock(&mu_);
    ++fired_;
    ok_ = ok;
    thread_ = std::this_thread::get_id();
    queue_for_new_call_ = loop_->ForNewCall();
  }
  bool WaitFired(int count) {
    absl::MutexLock lock(&mu_);
    auto done = [this, count] { return fired_ >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(10));
  }

  CompletionQueueLoop* loop_ = nullptr;
  absl::Mutex mu_;
  int fired_ = 0;
  bool ok_ = false;
  std::thread::id thread_;
  grpc::CompletionQueue* queue_for_new_call_ = nullptr;
};

TEST_CASE("each completion runs on its queue's one thread, which keeps new calls on that queue") {
  grpc::ServerBuilder builder;
  CompletionQueueLoop loop(builder, 2);
  REQUIRE(loop.size() == 2);
  loop.Start();

  // Several completions per queue: a turn-taking choice would hand out the other queue.
  for (int i : {1, 0, 1, 1, 0}) {
    Recorder recorder;
    recorder.loop_ = &loop;
    CompletionTag tag = CompletionTag::To<&Recorder::Fired>(&recorder);
    grpc::Alarm alarm;
    alarm.Set(loop.queue(i), std::chrono::system_clock::now(), &tag);
    REQUIRE(recorder.WaitFired(1));
    absl::MutexLock lock(&recorder.mu_);
    CHECK(recorder.ok_);
    CHECK(recorder.thread_ != std::this_thread::get_id());
    CHECK(recorder.queue_for_new_call_ == loop.queue(i));
  }

  // Off the loop's threads, new calls take the queues in turn.
  grpc::CompletionQueue* first = loop.ForNewCall();
  grpc::CompletionQueue* second = loop.ForNewCall();
  CHECK(first != second);
  CHECK(loop.ForNewCall() == first);
}

TEST_CASE("a loop's thread asking another loop for a queue gets one of that loop's") {
  grpc::ServerBuilder builder_a;
  grpc::ServerBuilder builder_b;
  CompletionQueueLoop loop_a(builder_a, 1);
  CompletionQueueLoop loop_b(builder_b, 1);
  loop_a.Start();
  loop_b.Start();
  Recorder recorder;
  recorder.loop_ = &loop_b;  // Runs on loop A's thread, asks loop B.
  CompletionTag tag = CompletionTag::To<&Recorder::Fired>(&recorder);
  grpc::Alarm alarm;
  alarm.Set(loop_a.queue(0), std::chrono::system_clock::now(), &tag);
  REQUIRE(recorder.WaitFired(1));
  absl::MutexLock lock(&recorder.mu_);
  CHECK(recorder.queue_for_new_call_ == loop_b.queue(0));
}

TEST_CASE("shutting down delivers pending completions before the threads stop") {
  grpc::ServerBuilder builder;
  CompletionQueueLoop loop(builder, 1);
  loop.Start();
  Recorder recorder;
  recorder.loop_ = &loop;
  CompletionTag tag = CompletionTag::To<&Recorder::Fired>(&recorder);
  grpc::Alarm alarm;
  alarm.Set(loop.queue(0), std::chrono::system_clock::now() + std::chrono::hours(1), &tag);
  alarm.Cancel();  // Completes at once, not ok.
  loop.Shutdown();
  absl::MutexLock lock(&recorder.mu_);
  CHECK(recorder.fired_ == 1);
  CHECK_FALSE(recorder.ok_);
}

// Two operations one after the other, the second started by the first's completion, as a
// served call's completion starts its next write: the object holds a LiveCall until the end.
class TwoStepCall {
 public:
  TwoStepCall(CompletionQueueLoop& loop, grpc::CompletionQueue* queue)
      : live_(std::make_unique<CompletionQueueLoop::LiveCall>(loop)), queue_(queue) {
    first_alarm_.Set(queue_, std::chrono::system_clock::now() + std::chrono::milliseconds(100),
                     &first_);
  }
  bool finished() const { return finished_.load(); }

 private:
  void OnFirst(bool) { second_alarm_.Set(queue_, std::chrono::system_clock::now(), &second_); }
  void OnSecond(bool) {
    finished_.store(true);
    live_.reset();
  }

  std::unique_ptr<CompletionQueueLoop::LiveCall> live_;
  grpc::CompletionQueue* const queue_;
  grpc::Alarm first_alarm_;
  grpc::Alarm second_alarm_;
  CompletionTag first_ = CompletionTag::To<&TwoStepCall::OnFirst>(this);
  CompletionTag second_ = CompletionTag::To<&TwoStepCall::OnSecond>(this);
  std::atomic<bool> finished_{false};
};

TEST_CASE("shutting down waits for live calls, whose completions may still start operations") {
  grpc::ServerBuilder builder;
  CompletionQueueLoop loop(builder, 1);
  loop.Start();
  TwoStepCall call(loop, loop.queue(0));
  CHECK(loop.live_calls() == 1);
  // Without the wait, the queue would be shut down before the first completion, which would
  // then start the second operation on it and abort the process.
  loop.Shutdown();
  CHECK(call.finished());
  CHECK(loop.live_calls() == 0);
}

}  // namespace
}  // namespace tessera::engine::server
