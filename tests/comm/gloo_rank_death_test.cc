// A rank of a Gloo group killed with SIGKILL (no goodbye on its sockets but the kernel's)
// makes every surviving rank's collective fail with a clear error, within the group timeout.
// Ranks are real processes. This test forks, so it is its own binary: the parent must have no
// other threads when it does.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "comm/gloo_communicator.h"
#include "tests/comm/file_store_for_test.h"

namespace tessera::comm {
namespace {

constexpr int kRanks = 3;
constexpr int kVictim = 2;
constexpr absl::Duration kGroupTimeout = absl::Seconds(5);
// The stated bound: survivors report the death within the group timeout, plus slack for a
// loaded machine.
constexpr auto kBound = std::chrono::seconds(5 + 5);

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A rank: joins, says so, then exchanges until a collective fails; writes the error and exits.
[[noreturn]] void RunRank(const std::filesystem::path& dir, int rank) {
  FileStoreForTest store(dir / "store");
  absl::StatusOr<std::unique_ptr<GlooCommunicator>> c = GlooCommunicator::Connect(
      store, "death", rank, kRanks, GlooOptions{.hostname = "127.0.0.1", .timeout = kGroupTimeout});
  if (!c.ok()) {
    std::ofstream(dir / ("error-" + std::to_string(rank))) << c.status().ToString();
    _exit(2);
  }
  std::ofstream(dir / ("ready-" + std::to_string(rank))) << "ready";
  std::vector<std::byte> send(kRanks * 64), recv(kRanks * 64);
  std::vector<int64_t> counts(kRanks, 64);
  while (true) {
    absl::Status s = (*c)->AllToAllV(send, counts, recv, counts);
    if (!s.ok()) {
      std::ofstream(dir / ("error-" + std::to_string(rank))) << s.ToString();
      _exit(0);
    }
  }
}

TEST_CASE("GlooCommunicator: a killed rank fails the rest of its group within the bound",
          "[comm][gloo]") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tessera-gloo-death-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "store");
  std::vector<pid_t> pids;
  for (int rank = 0; rank < kRanks; ++rank) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) RunRank(dir, rank);
    pids.push_back(pid);
  }
  auto all_ready = [&] {
    for (int rank = 0; rank < kRanks; ++rank) {
      if (!std::filesystem::exists(dir / ("ready-" + std::to_string(rank)))) return false;
    }
    return true;
  };
  const auto join_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!all_ready() && std::chrono::steady_clock::now() < join_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const bool ready = all_ready();
  if (ready) std::this_thread::sleep_for(std::chrono::milliseconds(300));  // Mid-exchange.

  kill(pids[kVictim], SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  std::vector<int> exit_codes(kRanks, -1);
  std::vector<std::chrono::steady_clock::duration> reported(kRanks);
  int remaining = kRanks;
  while (remaining > 0 && std::chrono::steady_clock::now() - killed_at < std::chrono::seconds(60)) {
    for (int rank = 0; rank < kRanks; ++rank) {
      if (exit_codes[rank] != -1) continue;
      int status = 0;
      if (waitpid(pids[rank], &status, WNOHANG) == pids[rank]) {
        exit_codes[rank] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        reported[rank] = std::chrono::steady_clock::now() - killed_at;
        --remaining;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (int rank = 0; rank < kRanks; ++rank) {
    if (exit_codes[rank] == -1) {
      kill(pids[rank], SIGKILL);
      waitpid(pids[rank], nullptr, 0);
    }
  }
  REQUIRE(ready);
  CHECK(exit_codes[kVictim] == 128 + SIGKILL);
  for (int rank = 0; rank < kRanks; ++rank) {
    if (rank == kVictim) continue;
    INFO("rank " << rank);
    REQUIRE(exit_codes[rank] == 0);
    CHECK(reported[rank] < kBound);
    const std::string error = ReadFile(dir / ("error-" + std::to_string(rank)));
    CHECK(error.find("UNAVAILABLE") != std::string::npos);
    CHECK(error.find("all-to-all failed on rank " + std::to_string(rank) +
                     " of 3 in group death") != std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tessera::comm
