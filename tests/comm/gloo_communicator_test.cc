#include "comm/gloo_communicator.h"

#include <catch2/catch.hpp>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include "comm/local_key_value_store.h"

namespace tessera::comm {
namespace {

// Bytes rank `from` sends to rank `to`: varied, some zero.
int64_t PairBytes(int from, int to) { return (from * 3 + to * 5 + 1) % 7 * 37; }
std::byte PairByte(int from, int to, int64_t i) {
  return static_cast<std::byte>((from * 61 + to * 17 + i) & 0xff);
}

// Runs `body(communicator)` on `size` threads, one rank each, in one group.
template <typename Body>
void RunGroup(int size, absl::Duration timeout, Body body) {
  LocalKeyValueStore store;
  static int next_group = 0;
  const std::string group = "test-group-" + std::to_string(next_group++);
  std::vector<std::thread> threads;
  std::vector<absl::Status> joined(size);
  std::vector<std::unique_ptr<GlooCommunicator>> communicators(size);
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] {
      absl::StatusOr<std::unique_ptr<GlooCommunicator>> c = GlooCommunicator::Connect(
          store, group, rank, size, GlooOptions{.hostname = "127.0.0.1", .timeout = timeout});
      joined[rank] = c.status();
      if (c.ok()) communicators[rank] = *std::move(c);
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : joined) REQUIRE(s.ok());
  threads.clear();
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] { body(*communicators[rank]); });
  }
  for (std::thread& t : threads) t.join();
}

TEST_CASE("GlooCommunicator: all-to-all moves every pair's bytes to the right place",
          "[comm][gloo]") {
  const int size = GENERATE(1, 2, 4);
  std::vector<std::vector<std::byte>> received(size);
  std::vector<absl::Status> results(size);
  RunGroup(size, absl::Seconds(20), [&](Communicator& c) {
    const int me = c.rank();
    std::vector<int64_t> send_counts(size), recv_counts(size);
    std::vector<std::byte> send;
    for (int to = 0; to < size; ++to) {
      send_counts[to] = PairBytes(me, to);
      for (int64_t i = 0; i < send_counts[to]; ++i) send.push_back(PairByte(me, to, i));
      recv_counts[to] = PairBytes(to, me);
    }
    int64_t total = 0;
    for (int64_t n : recv_counts) total += n;
    received[me].assign(static_cast<size_t>(total), std::byte{0});
    results[me] = c.AllToAllV(send, send_counts, received[me], recv_counts);
  });
  for (int me = 0; me < size; ++me) {
    REQUIRE(results[me].ok());
    size_t offset = 0;
    for (int from = 0; from < size; ++from) {
      for (int64_t i = 0; i < PairBytes(from, me); ++i) {
        REQUIRE(received[me][offset++] == PairByte(from, me, i));
      }
    }
    CHECK(offset == received[me].size());
  }
}

TEST_CASE("GlooCommunicator: sums and barriers agree on every rank", "[comm][gloo]") {
  const int size = 3;
  std::vector<std::vector<int64_t>> counts(size);
  std::vector<std::vector<float>> weights(size);
  RunGroup(size, absl::Seconds(20), [&](Communicator& c) {
    counts[c.rank()] = {c.rank(), 10 * c.rank(), 1};
    weights[c.rank()] = {0.5f * static_cast<float>(c.rank())};
    REQUIRE(c.AllReduceSum(std::span<int64_t>(counts[c.rank()])).ok());
    REQUIRE(c.AllReduceSum(std::span<float>(weights[c.rank()])).ok());
    REQUIRE(c.Barrier().ok());
  });
  for (int rank = 0; rank < size; ++rank) {
    CHECK(counts[rank] == std::vector<int64_t>{0 + 1 + 2, 0 + 10 + 20, 3});
    CHECK(weights[rank][0] == Approx(1.5f));
  }
}

TEST_CASE("GlooCommunicator: bad counts are refused before anything moves", "[comm][gloo]") {
  RunGroup(2, absl::Seconds(20), [&](Communicator& c) {
    std::vector<std::byte> buffer(4);
    std::vector<int64_t> wrong_size = {4};
    std::vector<int64_t> negative = {-1, 5};
    std::vector<int64_t> too_many = {4, 4};
    std::vector<int64_t> fine = {2, 2};
    absl::Status a = c.AllToAllV(buffer, wrong_size, buffer, fine);
    CHECK(a.code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(a.message()).find("send_counts has 1 entries") != std::string::npos);
    absl::Status b = c.AllToAllV(buffer, fine, buffer, negative);
    CHECK(std::string(b.message()).find("recv_counts[0] is negative") != std::string::npos);
    absl::Status d = c.AllToAllV(buffer, too_many, buffer, fine);
    CHECK(std::string(d.message()).find("sum to 8 bytes but the buffer holds 4") !=
          std::string::npos);
    // The group still works: nothing was exchanged.
    CHECK(c.Barrier().ok());
  });
}

TEST_CASE("GlooCommunicator: a rank that does not take part fails its peers within the timeout",
          "[comm][gloo]") {
  absl::Status absent_peer;
  absl::Status after;
  RunGroup(2, absl::Seconds(1), [&](Communicator& c) {
    if (c.rank() == 1) {
      std::this_thread::sleep_for(std::chrono::seconds(3));  // Misses the exchange.
      return;
    }
    std::vector<std::byte> send(8), recv(8);
    std::vector<int64_t> counts = {4, 4};
    absent_peer = c.AllToAllV(send, counts, recv, counts);
    after = c.Barrier();
  });
  CHECK(absent_peer.code() == absl::StatusCode::kUnavailable);
  CHECK(std::string(absent_peer.message()).find("all-to-all failed on rank 0 of 2") !=
        std::string::npos);
  // Broken for good: the next collective fails at once with the same error.
  CHECK(after == absent_peer);
}

TEST_CASE("GlooCommunicator: joining checks rank and size", "[comm][gloo]") {
  LocalKeyValueStore store;
  CHECK(GlooCommunicator::Connect(store, "g", 2, 2, {}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(GlooCommunicator::Connect(store, "g", 0, 0, {}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  // A group whose other rank never comes: the rendezvous times out with a clear error.
  absl::StatusOr<std::unique_ptr<GlooCommunicator>> alone = GlooCommunicator::Connect(
      store, "lonely", 0, 2, GlooOptions{.hostname = "127.0.0.1", .timeout = absl::Seconds(1)});
  CHECK(alone.status().code() == absl::StatusCode::kUnavailable);
  CHECK(std::string(alone.status().message()).find("could not join group lonely") !=
        std::string::npos);
}

}  // namespace
}  // namespace tessera::comm
