#include "engine/server/standby_prefill_streams.h"

#include <grpcpp/grpcpp.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/server/async_task.h"
#include "engine/server/idle_server_calls.h"
#include "tessera/internal/v1/worker.grpc.pb.h"

namespace tessera::engine::server {
namespace {

using tessera::internal::v1::PrefillClientMessage;
using tessera::internal::v1::PrefillServerMessage;

// Test double of a prefill worker: its Prefill waits for the request the way the real one
// does (registered in IdleServerCalls), then answers with the request id as the first
// token's text and holds no KV. It records how many streams were opened to it, which stream
// each request arrived on, and how many ended before a request.
class FakePrefillWorker final : public tessera::internal::v1::Worker::Service {
 public:
  grpc::Status Prefill(
      grpc::ServerContext* rpc,
      grpc::ServerReaderWriter<PrefillServerMessage, PrefillClientMessage>* stream) override {
    int stream_number = 0;
    {
      absl::MutexLock lock(&mu_);
      stream_number = ++opened_;
    }
    if (!idle_calls.Enter(rpc)) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "leaving");
    PrefillClientMessage message;
    const bool received = stream->Read(&message);
    idle_calls.Leave(rpc);
    if (!received) {
      absl::MutexLock lock(&mu_);
      ++ended_without_request_;
      return grpc::Status(grpc::StatusCode::CANCELLED, "no request");
    }
    {
      absl::MutexLock lock(&mu_);
      last_request_stream_ = stream_number;
    }
    PrefillServerMessage reply;
    reply.mutable_first()->set_text(message.request().request_id());
    reply.mutable_first()->set_finish_reason("length");
    stream->Write(reply);
    while (stream->Read(&message)) {
    }
    return grpc::Status::OK;
  }

  bool WaitUntil(int opened, int ended_without_request) {
    absl::MutexLock lock(&mu_);
    auto reached = [&] {
      return opened_ >= opened && ended_without_request_ >= ended_without_request;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(10));
  }
  int opened() {
    absl::MutexLock lock(&mu_);
    return opened_;
  }
  int last_request_stream() {
    absl::MutexLock lock(&mu_);
    return last_request_stream_;
  }
  int ended_without_request() {
    absl::MutexLock lock(&mu_);
    return ended_without_request_;
  }

  IdleServerCalls idle_calls;

 private:
  absl::Mutex mu_;
  int opened_ ABSL_GUARDED_BY(mu_) = 0;
  int last_request_stream_ ABSL_GUARDED_BY(mu_) = 0;
  int ended_without_request_ ABSL_GUARDED_BY(mu_) = 0;
};

// The fake worker on a loopback port, and the router side: one completion queue thread.
struct Fixture {
  Fixture() {
    grpc::ServerBuilder worker_builder;
    worker_builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    worker_builder.RegisterService(&worker);
    worker_server = worker_builder.BuildAndStart();
    address = absl::StrCat("127.0.0.1:", port);
    loop.Start();
  }
  ~Fixture() {
    loop.Shutdown();
    worker_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }

  FakePrefillWorker worker;
  int port = 0;
  std::unique_ptr<grpc::Server> worker_server;
  std::string address;
  grpc::ServerBuilder router_builder;
  CompletionQueueLoop loop{router_builder, 1};
  ChannelPool channels;
};

struct Outcome {
  std::string first_text;
  grpc::Status status;
};

AsyncTask<Outcome> ReadFirstAndEnd(std::unique_ptr<PrefillCall> call) {
  Outcome outcome;
  PrefillServerMessage reply;
  if (co_await call->Read(&reply)) outcome.first_text = reply.first().text();
  call->WritesDone();
  outcome.status = co_await call->Finish();
  co_return outcome;
}

// One request through `standby`, as the dispatcher makes it; waits for its end.
Outcome Request(StandbyPrefillStreams& standby, const std::string& address,
                const std::string& request_id, bool* taken_standby,
                const std::string& worker_id = "w1") {
  PrefillClientMessage first;
  first.mutable_request()->set_request_id(request_id);
  std::unique_ptr<PrefillCall> call = standby.Open(
      worker_id, address, /*parent=*/nullptr, first,
      [] {
        auto context = std::make_unique<grpc::ClientContext>();
        context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        return context;
      },
      /*take_waiting=*/true, taken_standby);
  absl::Mutex mu;
  std::optional<Outcome> result;
  StartDetached<Outcome>(ReadFirstAndEnd(std::move(call)), [&](Outcome outcome) {
    absl::MutexLock lock(&mu);
    result = std::move(outcome);
  });
  absl::MutexLock lock(&mu);
  auto done = [&] { return result.has_value(); };
  REQUIRE(mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(10)));
  return *result;
}

TEST_CASE("a request takes the stream opened ahead for its worker") {
  Fixture f;
  StandbyPrefillStreams standby(f.channels, f.loop, absl::Seconds(60));
  bool taken = true;
  Outcome cold = Request(standby, f.address, "cold", &taken);
  CHECK_FALSE(taken);  // Nothing was opened ahead yet.
  CHECK(cold.status.ok());
  CHECK(cold.first_text == "cold");
  CHECK(f.worker.opened() == 1);

  standby.Replenish("w1", f.address);
  REQUIRE(f.worker.WaitUntil(/*opened=*/2, 0));
  CHECK(standby.waiting() == 1);
  standby.Replenish("w1", f.address);  // One is already waiting: no second.

  Outcome warm = Request(standby, f.address, "warm", &taken);
  CHECK(taken);
  CHECK(warm.status.ok());
  CHECK(warm.first_text == "warm");
  CHECK(f.worker.last_request_stream() == 2);  // It arrived on the stream opened ahead.
  CHECK(f.worker.opened() == 2);
  CHECK(standby.waiting() == 0);
  standby.Close();
  CHECK(f.worker.ended_without_request() == 0);
}

TEST_CASE("a stream taken at once, its headers maybe still on the way, carries the request") {
  Fixture f;
  StandbyPrefillStreams standby(f.channels, f.loop, absl::Seconds(60));
  for (int i = 0; i < 20; ++i) {
    standby.Replenish("w1", f.address);
    bool taken = false;
    const std::string id = absl::StrCat("r", i);
    Outcome outcome = Request(standby, f.address, id, &taken);
    CHECK(taken);
    CHECK(outcome.status.ok());
    CHECK(outcome.first_text == id);
  }
  CHECK(f.worker.opened() == 20);
}

TEST_CASE("a worker registered anew at the same address never gets its predecessor's stream") {
  Fixture f;
  StandbyPrefillStreams standby(f.channels, f.loop, absl::Seconds(60));
  standby.Replenish("w1", f.address);
  REQUIRE(f.worker.WaitUntil(/*opened=*/1, 0));
  bool taken = true;
  Outcome outcome = Request(standby, f.address, "for-w2", &taken, "w2");
  CHECK_FALSE(taken);
  CHECK(outcome.status.ok());
  CHECK(f.worker.last_request_stream() == 2);
  CHECK(standby.waiting() == 1);  // w1's, until it goes stale or the pool closes.
  standby.Close();
}

TEST_CASE("forgetting a worker cancels only its waiting streams") {
  Fixture f;
  StandbyPrefillStreams standby(f.channels, f.loop, absl::Seconds(60));
  standby.Replenish("w1", f.address);
  standby.Replenish("w2", f.address);
  REQUIRE(f.worker.WaitUntil(/*opened=*/2, 0));
  CHECK(standby.waiting() == 2);
  standby.Forget("w1");
  CHECK(standby.waiting() == 1);
  REQUIRE(f.worker.WaitUntil(/*opened=*/2, /*ended_without_request=*/1));
  bool taken = false;
  Outcome outcome = Request(standby, f.address, "w2-request", &taken, "w2");
  CHECK(taken);
  CHECK(outcome.status.ok());
  standby.Close();
}

TEST_CASE("a stream waiting longer than max_idle is replaced, not used") {
  Fixture f;
  StandbyPrefillStreams standby(f.channels, f.loop, absl::Seconds(60), absl::Milliseconds(1));
  standby.Replenish("w1", f.address);
  REQUIRE(f.worker.WaitUntil(/*opened=*/1, 0));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  bool taken = true;
  Outcome outcome = Request(standby, f.address, "r", &taken);
  CHECK_FALSE(taken);
  CHECK(outcome.status.ok());
  CHECK(outcome.first_text == "r");
  CHECK(f.worker.last_request_stream() == 2);
  // The stale stream was cancelled, so its handler no longer holds a worker thread.
  REQUIRE(f.worker.WaitUntil(/*opened=*/2, /*ended_without_request=*/1));
}

TEST_CASE("closing cancels the waiting streams; after it, requests open their own") {
  Fixture f;
  StandbyPrefillStreams standby(f.channels, f.loop, absl::Seconds(60));
  standby.Replenish("w1", f.address);
  REQUIRE(f.worker.WaitUntil(/*opened=*/1, 0));
  standby.Close();
  REQUIRE(f.worker.WaitUntil(/*opened=*/1, /*ended_without_request=*/1));
  CHECK(standby.waiting() == 0);
  standby.Replenish("w1", f.address);
  CHECK(standby.waiting() == 0);
  bool taken = true;
  Outcome outcome = Request(standby, f.address, "after", &taken);
  CHECK_FALSE(taken);
  CHECK(outcome.status.ok());
  // Every call is over: the queues shut down at once (the fixture would hang otherwise).
  f.loop.Shutdown(absl::Seconds(5));
  CHECK(f.loop.live_calls() == 0);
}

TEST_CASE("a leaving worker ends the streams waiting on it and refuses new ones") {
  Fixture f;
  StandbyPrefillStreams standby(f.channels, f.loop, absl::Seconds(60));
  standby.Replenish("w1", f.address);
  REQUIRE(f.worker.WaitUntil(/*opened=*/1, 0));
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (f.worker.idle_calls.waiting() == 0 && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(1));
  REQUIRE(f.worker.idle_calls.waiting() == 1);
  f.worker.idle_calls.CancelAll();
  REQUIRE(f.worker.WaitUntil(/*opened=*/1, /*ended_without_request=*/1));
  CHECK(f.worker.idle_calls.waiting() == 0);
  // A request that takes the cancelled stream fails like a call to a worker that went away.
  bool taken = false;
  Outcome outcome = Request(standby, f.address, "late", &taken);
  CHECK(taken);
  CHECK_FALSE(outcome.status.ok());
  // New streams are refused at once.
  Outcome fresh = Request(standby, f.address, "fresh", &taken);
  CHECK_FALSE(taken);
  CHECK(fresh.status.error_code() == grpc::StatusCode::UNAVAILABLE);
  standby.Close();
}

}  // namespace
}  // namespace tessera::engine::server
