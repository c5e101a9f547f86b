// Microbenchmarks of the kernels on the default model's shapes, per ISA path, one thread:
//   build/bench/kernels_benchmark --benchmark_filter=Matmul     (args: rows, cols, tokens,
//                                                                 isa 0/1/2 = scalar/avx2/avx512,
//                                                                 threads)
//   build/bench/kernels_benchmark --benchmark_filter=Attend     (args: positions before the
//                                                                 tile, tokens in it, isa)
// Compare paths by their ratios within one run; absolute times drift on a shared machine.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cpu_features.h"
#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "kernels/packed_matrix.h"
#include "kernels/quantized_activations.h"
#include "kernels/thread_pool.h"

namespace tessera::kernels {
namespace {

std::vector<uint8_t> RandomQ4_1(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::vector<uint8_t> data(rows * cols / kQuantBlock * sizeof(BlockQ4_1));
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t i = 0; i < data.size(); i += sizeof(BlockQ4_1)) {
    BlockQ4_1 b;
    b.d = Fp32ToFp16(0.01f);
    b.m = Fp32ToFp16(-0.08f);
    for (auto& q : b.qs) q = static_cast<uint8_t>(byte(rng));
    std::memcpy(&data[i], &b, sizeof(b));
  }
  return data;
}

void BM_Matmul(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), tokens = state.range(2);
  const Isa isa = static_cast<Isa>(state.range(3));
  std::vector<Isa> supported = SupportedIsas();
  if (std::find(supported.begin(), supported.end(), isa) == supported.end()) {
    state.SkipWithError("ISA not supported on this CPU");
    return;
  }
  std::mt19937 rng(1);
  std::vector<uint8_t> data = RandomQ4_1(rows, cols, rng);
  WeightSource source{TensorType::kQ4_1, data, rows};
  PackedMatrix w = PackedMatrix::Pack({&source, 1}, cols).value();
  std::vector<float> x(tokens * cols);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  QuantizedActivations qa;
  qa.Quantize(x.data(), tokens, cols, cols, isa);
  std::vector<float> out(tokens * rows);
  ThreadPool pool(static_cast<int>(state.range(4)));
  for (auto _ : state) {
    Matmul(w, qa, out.data(), rows, pool, isa);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GMAC/s"] =
      benchmark::Counter(static_cast<double>(rows * cols * tokens) * state.iterations() / 1e9,
                         benchmark::Counter::kIsRate);
  state.SetLabel(std::string(IsaName(isa)) + ", " + std::to_string(state.range(4)) + " threads");
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) {
    for (int isa : {0, 1, 2}) {
      for (int tokens : {1, 16, 128}) {
        b->Args({960, 576, tokens, isa, threads});   // Fused QKV.
        b->Args({3072, 576, tokens, isa, threads});  // Fused gate/up.
        b->Args({576, 1536, tokens, isa, threads});  // Down.
      }
    }
  }
}
BENCHMARK(BM_Matmul)->Apply(Shapes);

// One attention work unit as the model issues it: a tile of new tokens of one sequence, for
// one kv head and its group of query heads (SmolLM2: 9 heads over 3 kv heads of 64), over a
// paged fp16 cache of 16-position blocks.
void BM_AttendTile(benchmark::State& state) {
  const int64_t first_pos = state.range(0);
  const int tokens = static_cast<int>(state.range(1));
  const Isa isa = static_cast<Isa>(state.range(2));
  std::vector<Isa> supported = SupportedIsas();
  if (std::find(supported.begin(), supported.end(), isa) == supported.end()) {
    state.SkipWithError("ISA not supported on this CPU");
    return;
  }
  const AttentionShape shape{9, 3, 64, 16, 0.125f};
  const int64_t positions = first_pos + tokens;
  const int64_t kv_dim = int64_t{shape.num_kv_heads} * shape.head_dim;
  const int64_t blocks = (positions + shape.block_size - 1) / shape.block_size;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<uint16_t> keys(blocks * shape.block_size * kv_dim);
  std::vector<uint16_t> values(keys.size());
  for (uint16_t& k : keys) k = Fp32ToFp16(normal(rng));
  for (uint16_t& v : values) v = Fp32ToFp16(normal(rng));
  std::vector<const uint16_t*> key_ptrs, value_ptrs;
  for (int64_t b = 0; b < blocks; ++b) {
    key_ptrs.push_back(keys.data() + b * shape.block_size * kv_dim);
    value_ptrs.push_back(values.data() + b * shape.block_size * kv_dim);
  }
  const int64_t q_stride = int64_t{shape.num_heads} * shape.head_dim;
  std::vector<float> q(tokens * q_stride), out(q.size());
  for (float& v : q) v = normal(rng);
  for (auto _ : state) {
    AttendTile(shape, {key_ptrs.data(), value_ptrs.data()}, q.data(), q_stride, first_pos, tokens,
               0, out.data(), q_stride, isa);
    benchmark::DoNotOptimize(out.data());
  }
  // Multiply-adds of QK^T and PV for the group's 3 heads over each token's visible positions.
  const double visible = static_cast<double>(tokens) * first_pos + tokens * (tokens + 1) / 2.0;
  state.counters["GMAC/s"] = benchmark::Counter(
      visible * 3 * shape.head_dim * 2 * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
  state.SetLabel(std::string(IsaName(isa)));
}
BENCHMARK(BM_AttendTile)->ArgsProduct({{0, 160, 512, 2048}, {1, 16}, {0, 1, 2}});

}  // namespace
}  // namespace tessera::kernels

BENCHMARK_MAIN();
