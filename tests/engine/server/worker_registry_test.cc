#include "engine/server/worker_registry.h"

#include <catch2/catch.hpp>
#include <thread>

namespace tessera::engine::server {
namespace {

using tessera::internal::v1::RegisterRequest;

RegisterRequest Worker(tessera::internal::v1::WorkerRole role, const std::string& address,
                       int64_t queued = 0) {
  RegisterRequest request;
  request.set_role(role);
  request.set_address(address);
  request.mutable_load()->set_queued_prefill_tokens(queued);
  request.mutable_load()->set_total_kv_blocks(100);
  request.mutable_load()->set_free_kv_blocks(100);
  return request;
}

TEST_CASE("WorkerRegistry: picks by role and load, counts leases, and drains", "[server]") {
  WorkerRegistry registry;
  const std::string busy = registry.Register(Worker(tessera::internal::v1::ROLE_PREFILL, "a:1", 5000));
  const std::string idle = registry.Register(Worker(tessera::internal::v1::ROLE_PREFILL, "b:1", 0));
  registry.Register(Worker(tessera::internal::v1::ROLE_DECODE, "c:1"));
  CHECK(registry.Has(WorkerNeed::kPrefill));
  CHECK(registry.Has(WorkerNeed::kDecode));
  CHECK_FALSE(registry.Has(WorkerNeed::kColocated));
  CHECK(registry.Acquire(WorkerNeed::kColocated, 10).status().code() ==
        absl::StatusCode::kUnavailable);
  {
    WorkerLease lease = registry.Acquire(WorkerNeed::kPrefill, 100).value();
    CHECK(lease.worker_id() == idle);
    CHECK(lease.address() == "b:1");
    auto listed = registry.List();
    auto it = std::find_if(listed.begin(), listed.end(),
                           [&](const auto& w) { return w.worker_id() == idle; });
    CHECK(it->in_flight() == 1);
  }
  for (const auto& w : registry.List()) CHECK(w.in_flight() == 0);  // Leases ended.
  // Excluding the idle worker leaves the busy one.
  CHECK(registry.Acquire(WorkerNeed::kPrefill, 1, {idle})->worker_id() == busy);
  // A drained worker gets no more work and is told so in its heartbeat.
  REQUIRE(registry.Drain("b:1").ok());
  CHECK(registry.Acquire(WorkerNeed::kPrefill, 1)->worker_id() == busy);
  tessera::internal::v1::HeartbeatRequest beat;
  beat.set_worker_id(idle);
  auto response = registry.Heartbeat(beat);
  CHECK(response.known());
  CHECK(response.drain());
  CHECK(registry.Drain("nobody").code() == absl::StatusCode::kNotFound);
  beat.set_worker_id("unknown-7");
  CHECK_FALSE(registry.Heartbeat(beat).known());
}

TEST_CASE("WorkerRegistry: workers on the caller's host are called on their Unix socket",
          "[server]") {
  WorkerRegistryOptions options;
  options.host_id = "here/boot-1";
  WorkerRegistry registry(options);
  RegisterRequest local = Worker(tessera::internal::v1::ROLE_PREFILL, "a:1");
  local.set_host_id("here/boot-1");
  local.set_local_address("unix-abstract:tessera-worker-1");
  RegisterRequest remote = Worker(tessera::internal::v1::ROLE_DECODE, "b:1");
  remote.set_host_id("there/boot-2");
  remote.set_local_address("unix-abstract:tessera-worker-2");
  RegisterRequest old = Worker(tessera::internal::v1::ROLE_BOTH, "c:1");  // No local address.
  old.set_host_id("here/boot-1");
  registry.Register(local);
  registry.Register(remote);
  registry.Register(old);
  WorkerLease prefill = registry.Acquire(WorkerNeed::kPrefill, 1).value();
  CHECK(prefill.call_address() == "unix-abstract:tessera-worker-1");
  CHECK(prefill.address() == "a:1");  // What other workers (KV pulls) use.
  CHECK(registry.Acquire(WorkerNeed::kDecode, 1)->call_address() == "b:1");
  CHECK(registry.Acquire(WorkerNeed::kColocated, 1)->call_address() == "c:1");
  // A registry that does not know its host always uses the TCP address.
  WorkerRegistry unknown;
  unknown.Register(local);
  CHECK(unknown.Acquire(WorkerNeed::kPrefill, 1)->call_address() == "a:1");
}

TEST_CASE("WorkerRegistry: a lease released early stops counting at once, and only once",
          "[server]") {
  WorkerRegistry registry;
  registry.Register(Worker(tessera::internal::v1::ROLE_DECODE, "c:1"));
  auto in_flight = [&] { return registry.List().at(0).in_flight(); };
  WorkerLease first = registry.Acquire(WorkerNeed::kDecode, 10).value();
  {
    WorkerLease second = registry.Acquire(WorkerNeed::kDecode, 10).value();
    CHECK(in_flight() == 2);
    second.Release();
    CHECK(in_flight() == 1);
    second.Failed();  // After the release: no effect.
  }
  CHECK(in_flight() == 1);  // Destroying a released lease releases nothing more.
  first.Release();
  CHECK(in_flight() == 0);
  CHECK(registry.Acquire(WorkerNeed::kDecode, 10).ok());  // Still healthy.
}

TEST_CASE("WorkerRegistry: a failing worker leaves rotation and is probed back", "[server]") {
  WorkerRegistryOptions options;
  options.breaker.failures_to_eject = 2;
  options.breaker.initial_backoff = std::chrono::milliseconds(50);
  WorkerRegistry registry(options);
  const std::string flaky = registry.Register(Worker(tessera::internal::v1::ROLE_DECODE, "a:1"));
  const std::string good = registry.Register(Worker(tessera::internal::v1::ROLE_DECODE, "b:1"));
  for (int i = 0; i < 2; ++i) registry.Acquire(WorkerNeed::kDecode, 1, {good})->Failed();
  // Ejected: only the good worker is picked, however often.
  for (int i = 0; i < 5; ++i) CHECK(registry.Acquire(WorkerNeed::kDecode, 1)->worker_id() == good);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  {
    WorkerLease probe = registry.Acquire(WorkerNeed::kDecode, 1).value();
    CHECK(probe.worker_id() == flaky);  // The probe.
    probe.Succeeded();
  }
  auto listed = registry.List();
  for (const auto& w : listed) CHECK(w.state() == "serving");
}

TEST_CASE("WorkerRegistry: workers that stop heartbeating are reaped", "[server]") {
  WorkerRegistryOptions options;
  options.heartbeat_timeout = std::chrono::milliseconds(30);
  WorkerRegistry registry(options);
  const std::string id = registry.Register(Worker(tessera::internal::v1::ROLE_BOTH, "a:1"));
  CHECK(registry.Reap().empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(registry.Reap() == std::vector<std::string>{id});
  CHECK_FALSE(registry.Has(WorkerNeed::kColocated));
}

}  // namespace
}  // namespace tessera::engine::server
