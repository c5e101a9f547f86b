// `tessera bench kv-transfer`: how fast a prefill's KV moves to a decode worker in another
// process on this host, through Tessera's own transfer path (KvTransfer::Pull into KvPuller),
// over shared memory and over gRPC, against memcpy of the same bytes in one process.
// Thread-compatible; forks a source process.
#ifndef TESSERA_BENCH_KV_TRANSFER_BENCH_H_
#define TESSERA_BENCH_KV_TRANSFER_BENCH_H_

#include <vector>

#include "absl/status/status.h"

namespace tessera::bench {

struct KvTransferBenchOptions {
  std::vector<int> positions = {512, 2048};  // Prompt lengths whose KV is handed over.
  int repetitions = 20;
  // KV shape; the defaults are SmolLM2-135M's (30 layers, 3 KV heads of 64).
  int layers = 30;
  int kv_heads = 3;
  int head_dim = 64;
  int block_size = 16;
  bool json = false;
};

absl::Status RunKvTransferBench(const KvTransferBenchOptions& options);

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_KV_TRANSFER_BENCH_H_
