#include <grpcpp/grpcpp.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "comm/gloo_communicator.h"
#include "engine/server/completion_queue_loop.h"
#include "engine/server/rendezvous_service.h"
#include "engine/server/router_key_value_store.h"

namespace tessera::engine::server {
namespace {

// The real service on a loopback port, as the router serves it.
class RendezvousServer {
 public:
  explicit RendezvousServer(int64_t capacity = 64 << 20) : service_(capacity) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    queues_ = std::make_unique<CompletionQueueLoop>(builder, 1);
    server_ = builder.BuildAndStart();
    queues_->Start();
    service_.Serve(*queues_);
  }
  ~RendezvousServer() {
    server_->Shutdown(std::chrono::system_clock::now());
    queues_->Shutdown();
  }
  std::shared_ptr<grpc::Channel> Channel() const {
    return grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                               grpc::InsecureChannelCredentials());
  }

 private:
  RendezvousService service_;
  int port_ = 0;
  std::unique_ptr<CompletionQueueLoop> queues_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_CASE("Rendezvous: a value set is read back; a missing key waits, then times out",
          "[server][rendezvous]") {
  RendezvousServer server;
  RouterKeyValueStore store(server.Channel());
  REQUIRE(store.Set("group/0", std::string("addr\0bytes", 10)).ok());
  absl::StatusOr<std::string> value = store.Get("group/0", absl::Seconds(5));
  REQUIRE(value.ok());
  CHECK(*value == std::string("addr\0bytes", 10));

  absl::StatusOr<std::string> missing = store.Get("group/1", absl::Milliseconds(300));
  CHECK(missing.status().code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(std::string(missing.status().message()).find("key group/1 not available") !=
        std::string::npos);
}

TEST_CASE("Rendezvous: a waiting Get returns when another client sets the key",
          "[server][rendezvous]") {
  RendezvousServer server;
  RouterKeyValueStore reader(server.Channel());
  RouterKeyValueStore writer(server.Channel());
  std::vector<absl::StatusOr<std::string>> got(3, absl::UnknownError("not run"));
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i) {
    readers.emplace_back([&, i] { got[i] = reader.Get("late", absl::Seconds(20)); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // Let them wait.
  REQUIRE(writer.Set("late", "here").ok());
  for (std::thread& t : readers) t.join();
  for (const auto& value : got) {
    REQUIRE(value.ok());
    CHECK(*value == "here");
  }
}

TEST_CASE("Rendezvous: bad keys, oversized values and a full store are refused",
          "[server][rendezvous]") {
  RendezvousServer server(/*capacity=*/100);
  RouterKeyValueStore store(server.Channel());
  CHECK(store.Set("", "x").code() == absl::StatusCode::kInvalidArgument);
  absl::Status big = store.Set("k", std::string(RendezvousService::kMaxValueBytes + 1, 'x'));
  CHECK(big.code() == absl::StatusCode::kInvalidArgument);
  CHECK(store.Set("a", std::string(90, 'x')).ok());
  absl::Status full = store.Set("b", std::string(20, 'x'));
  CHECK(full.code() == absl::StatusCode::kResourceExhausted);
  CHECK(std::string(full.message()).find("holds 91 of its 100 bytes") != std::string::npos);
  // Replacing a value frees the old one's bytes.
  CHECK(store.Set("a", std::string(10, 'y')).ok());
  CHECK(store.Set("b", std::string(20, 'x')).ok());
}

TEST_CASE("Rendezvous: a Gloo group forms through it and exchanges data",
          "[server][rendezvous][comm]") {
  RendezvousServer server;
  constexpr int kSize = 3;
  std::vector<int64_t> sums(kSize, 0);
  std::vector<absl::Status> results(kSize);
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < kSize; ++rank) {
    ranks.emplace_back([&, rank] {
      RouterKeyValueStore store(server.Channel());  // Each rank its own client.
      absl::StatusOr<std::unique_ptr<comm::GlooCommunicator>> c =
          comm::GlooCommunicator::Connect(store, "ep-test", rank, kSize, {});
      if (!c.ok()) {
        results[rank] = c.status();
        return;
      }
      std::vector<int64_t> value = {rank + 1};
      results[rank] = (*c)->AllReduceSum(std::span<int64_t>(value));
      sums[rank] = value[0];
    });
  }
  for (std::thread& t : ranks) t.join();
  for (int rank = 0; rank < kSize; ++rank) {
    INFO(results[rank].ToString());
    REQUIRE(results[rank].ok());
    CHECK(sums[rank] == 1 + 2 + 3);
  }
}

}  // namespace
}  // namespace tessera::engine::server
