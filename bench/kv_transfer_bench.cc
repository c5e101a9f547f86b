#include "bench/kv_transfer_bench.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/server/handoff_registry.h"
#include "engine/server/kv_puller.h"
#include "engine/server/kv_transfer_service.h"
#include "engine/server/worker_context.h"
#include "kvcache/kv_rows.h"
#include "kvcache/paged_kv_cache.h"
#include "nlohmann/json.hpp"

namespace tessera::bench {
namespace {

using Clock = std::chrono::steady_clock;

kvcache::KvCacheShape Shape(const KvTransferBenchOptions& o, int32_t num_blocks) {
  kvcache::KvCacheShape shape;
  shape.num_layers = o.layers;
  shape.num_kv_heads = o.kv_heads;
  shape.head_dim = o.head_dim;
  shape.block_size = o.block_size;
  shape.num_blocks = num_blocks;
  return shape;
}

// A scattered block table, as a busy cache hands out.
std::vector<kvcache::BlockId> Table(int32_t blocks, int32_t pool, uint32_t seed) {
  std::vector<kvcache::BlockId> all(pool);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), std::mt19937(seed));
  all.resize(blocks);
  return all;
}

std::string HandoffId(int positions) { return absl::StrCat("bench-", positions); }

// The source process: a shared-memory cache with one finished handoff per size, served by the
// real KvTransfer service. Writes its port to `port_fd`, then serves until killed.
[[noreturn]] void RunSource(const KvTransferBenchOptions& o, int32_t pool, int port_fd) {
  auto cache = kvcache::PagedKvCache::Create(Shape(o, pool), /*shared=*/true);
  if (!cache.ok()) {
    std::fprintf(stderr, "source: %s\n", cache.status().ToString().c_str());
    _exit(1);
  }
  std::mt19937 rng(1);
  uint8_t* data = (*cache)->data();
  for (size_t i = 0; i < (*cache)->layout().total_bytes(); i += 64) data[i] = rng() & 0xff;
  engine::server::HandoffRegistry registry(o.layers);
  for (int positions : o.positions) {
    const int32_t blocks = (positions + o.block_size - 1) / o.block_size;
    std::vector<kvcache::BlockId> table = Table(blocks, pool, positions);
    registry.Open(HandoffId(positions), positions).IgnoreError();
    for (int32_t layer = 0; layer < o.layers; ++layer) {
      registry.Progress(HandoffId(positions), layer, positions, table);
    }
    registry.Finish(HandoffId(positions), {42});
  }
  engine::server::WorkerContext context;
  context.host_id = engine::server::LocalHostId();
  context.cache = cache->get();
  context.handoffs = &registry;
  engine::server::KvTransferService service(context);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.SetMaxSendMessageSize(engine::server::kMaxInternalMessageBytes);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (write(port_fd, &port, sizeof(port)) != sizeof(port)) _exit(1);
  close(port_fd);
  server->Wait();
  _exit(0);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

absl::Status RunKvTransferBench(const KvTransferBenchOptions& o) {
  if (o.positions.empty() || o.repetitions < 1) {
    return absl::InvalidArgumentError("need at least one size and one repetition");
  }
  const int max_positions = *std::max_element(o.positions.begin(), o.positions.end());
  const int32_t pool = 2 * ((max_positions + o.block_size - 1) / o.block_size) + 8;
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return absl::InternalError("pipe failed");
  // Fork before this process touches gRPC: each side initializes its own.
  pid_t source = fork();
  if (source < 0) return absl::InternalError("fork failed");
  if (source == 0) {
    close(pipe_fds[0]);
    RunSource(o, pool, pipe_fds[1]);
  }
  close(pipe_fds[1]);
  int port = 0;
  const bool got_port = read(pipe_fds[0], &port, sizeof(port)) == sizeof(port);
  close(pipe_fds[0]);
  auto stop_source = [&] {
    kill(source, SIGKILL);
    waitpid(source, nullptr, 0);
  };
  if (!got_port) {
    stop_source();
    return absl::InternalError("the source process did not start");
  }
  const std::string address = absl::StrCat("127.0.0.1:", port);

  auto destination = kvcache::PagedKvCache::Create(Shape(o, pool));
  if (!destination.ok()) {
    stop_source();
    return destination.status();
  }
  engine::server::ChannelPool channels;
  const std::string host_id = engine::server::LocalHostId();
  nlohmann::json report = nlohmann::json::array();
  if (!o.json) {
    std::printf("KV handoff between two processes, %d layers x %d KV heads x %d, blocks of %d\n",
                o.layers, o.kv_heads, o.head_dim, o.block_size);
    std::printf("%9s %10s %14s %14s %14s %10s %10s\n", "positions", "MB", "memcpy GB/s", "shm GB/s",
                "gRPC GB/s", "shm/memcpy", "gRPC/memcpy");
  }
  for (int positions : o.positions) {
    const int32_t blocks = (positions + o.block_size - 1) / o.block_size;
    engine::ImportSlot slot;
    slot.positions = positions;
    slot.blocks = Table(blocks, pool, positions + 7);
    const kvcache::KvCacheLayout& layout = (*destination)->layout();
    const double bytes = 2.0 * positions * layout.shape.kv_dim() * 2 * o.layers;

    // The reference: memcpy of the same number of bytes, one process, warm buffers.
    std::vector<uint8_t> from(static_cast<size_t>(bytes), 1), to(static_cast<size_t>(bytes), 0);
    std::vector<double> memcpy_seconds;
    for (int r = 0; r < o.repetitions + 1; ++r) {
      auto t0 = Clock::now();
      std::memcpy(to.data(), from.data(), from.size());
      auto t1 = Clock::now();
      if (r > 0) memcpy_seconds.push_back(std::chrono::duration<double>(t1 - t0).count());
    }

    double transport_gbps[2] = {0, 0};
    for (int network = 0; network < 2; ++network) {
      engine::server::KvPuller puller(channels, host_id, network == 1);
      tessera::internal::v1::KvSource kv_source;
      kv_source.set_address(address);
      kv_source.set_handoff_id(HandoffId(positions));
      kv_source.set_host_id(host_id);
      std::vector<double> seconds;
      for (int r = 0; r < o.repetitions + 1; ++r) {
        auto t0 = Clock::now();
        absl::StatusOr<engine::server::KvPullResult> pulled =
            puller.Pull(kv_source, slot, **destination, nullptr);
        auto t1 = Clock::now();
        if (!pulled.ok()) {
          stop_source();
          return pulled.status();
        }
        if (pulled->shared_memory != (network == 0)) {
          stop_source();
          return absl::InternalError("the pull did not use the transport under test");
        }
        if (r > 0) seconds.push_back(std::chrono::duration<double>(t1 - t0).count());
      }
      transport_gbps[network] = bytes / Median(seconds) / 1e9;
    }
    const double memcpy_gbps = bytes / Median(memcpy_seconds) / 1e9;
    if (o.json) {
      report.push_back({{"positions", positions},
                        {"bytes", bytes},
                        {"memcpy_gbps", memcpy_gbps},
                        {"shared_memory_gbps", transport_gbps[0]},
                        {"grpc_gbps", transport_gbps[1]}});
    } else {
      std::printf("%9d %10.1f %14.2f %14.2f %14.2f %9.0f%% %9.0f%%\n", positions, bytes / 1e6,
                  memcpy_gbps, transport_gbps[0], transport_gbps[1],
                  100 * transport_gbps[0] / memcpy_gbps, 100 * transport_gbps[1] / memcpy_gbps);
    }
  }
  stop_source();
  if (o.json) std::printf("%s\n", report.dump(2).c_str());
  return absl::OkStatus();
}

}  // namespace tessera::bench
