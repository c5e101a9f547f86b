// Expert parallelism: a Qwen3-MoE or DeepSeek-V3 model split over EP = 1, 2 and 4 ranks (threads
// here, each with its own Gloo connection over loopback, its own KV cache and its own sequences)
// computes exactly what the single-process model computes.
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "comm/gloo_communicator.h"
#include "comm/local_key_value_store.h"
#include "engine/models/deepseek_v3.h"
#include "engine/models/expert_parallel.h"
#include "engine/models/qwen3_moe.h"
#include "kvcache/paged_kv_cache.h"
#include "tests/engine/moe_reference_fixture.h"

namespace tessera::engine {
namespace {

constexpr int32_t kBlockSize = 4;

// One sequence's steps: the first half of the prompt as a prefill chunk, then one token per
// step. Returns the logits of every step, or an empty step list on error.
struct SequenceRun {
  std::vector<int32_t> prompt;
  std::vector<kvcache::BlockId> blocks;
  int32_t next = 0;
  std::vector<std::vector<float>> logits;
  bool done() const { return next >= static_cast<int32_t>(prompt.size()); }
  int32_t step_tokens() const { return next == 0 ? static_cast<int32_t>(prompt.size()) / 2 : 1; }
};

// Runs `runs` on `model` in lockstep for `steps` steps (empty batches once all are done).
absl::Status RunSteps(Model& model, kvcache::PagedKvCache& cache, std::vector<SequenceRun>& runs,
                      int steps) {
  const int32_t vocab = model.config().vocab_size;
  for (int s = 0; s < steps; ++s) {
    std::vector<SequenceStep> batch;
    std::vector<SequenceRun*> members;
    for (SequenceRun& run : runs) {
      if (run.done()) continue;
      const int32_t n = run.step_tokens();
      batch.push_back({.tokens = std::span<const int32_t>(run.prompt).subspan(run.next, n),
                       .start_pos = run.next,
                       .block_table = run.blocks,
                       .want_logits = true});
      members.push_back(&run);
    }
    std::vector<float> logits(batch.size() * static_cast<size_t>(vocab));
    if (absl::Status st = model.Forward(batch, cache, logits); !st.ok()) return st;
    for (size_t i = 0; i < members.size(); ++i) {
      members[i]->logits.emplace_back(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
      members[i]->next += static_cast<int32_t>(batch[i].tokens.size());
    }
  }
  return absl::OkStatus();
}

std::vector<SequenceRun> RunsFor(const std::vector<std::vector<int32_t>>& prompts) {
  std::vector<SequenceRun> runs;
  int32_t next_block = 0;
  for (const auto& prompt : prompts) {
    SequenceRun run;
    run.prompt = prompt;
    for (size_t i = 0; i < (prompt.size() + kBlockSize - 1) / kBlockSize; ++i) {
      run.blocks.push_back(next_block++);
    }
    runs.push_back(std::move(run));
  }
  return runs;
}

// Runs an EP group of `ranks` threads, rank r serving prompts served[r], and checks each
// sequence's logits against `expected` (the single-process run of every prompt).
// `overlap_min_tokens` < 0: no micro-batch overlap; else overlap for steps of at least that
// many tokens (on any rank).
void CheckGroup(const testing::MoeReference& ref, testing::MoeLoader load, int ranks,
                int32_t overlap_min_tokens, const std::vector<std::vector<size_t>>& served,
                const std::vector<SequenceRun>& expected, int steps) {
  const bool overlap = overlap_min_tokens >= 0;
  static int groups_formed = 0;
  comm::LocalKeyValueStore store;
  const std::string group_name = absl::StrCat(ref.checkpoint_dir, "-", groups_formed++);
  std::vector<absl::Status> results(ranks);
  std::vector<std::vector<SequenceRun>> per_rank(ranks);
  std::vector<MoeLayerTimes> times(ranks);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < ranks; ++rank) {
    threads.emplace_back([&, rank] {
      absl::StatusOr<std::unique_ptr<comm::GlooCommunicator>> group =
          comm::GlooCommunicator::Connect(store, group_name, rank, ranks, {});
      if (!group.ok()) {
        results[rank] = group.status();
        return;
      }
      absl::StatusOr<std::unique_ptr<comm::GlooCommunicator>> second;
      if (overlap) {
        second = comm::GlooCommunicator::Connect(store, group_name + "-lane1", rank, ranks, {});
        if (!second.ok()) {
          results[rank] = second.status();
          return;
        }
      }
      kernels::ThreadPool rank_pool(1);
      absl::StatusOr<std::unique_ptr<Model>> model = load(
          ref.checkpoint_dir,
          ModelOptions{.pool = &rank_pool,
                       .expert_group = group->get(),
                       .overlap_group = overlap ? second->get() : nullptr,
                       .overlap_min_tokens = std::max(overlap_min_tokens, 0),
                       .moe_times = &times[rank]});
      if (!model.ok()) {
        results[rank] = model.status();
        return;
      }
      auto cache = kvcache::PagedKvCache::Create(KvShapeFor((*model)->config(), kBlockSize, 32));
      std::vector<std::vector<int32_t>> prompts;
      for (size_t p : served[rank]) prompts.push_back(ref.prompts[p]);
      per_rank[rank] = RunsFor(prompts);
      results[rank] = RunSteps(**model, **cache, per_rank[rank], steps);
    });
  }
  for (std::thread& t : threads) t.join();
  // The ranks agree on which steps split. The first step has 4 tokens or more on rank 0,
  // later ones 2 or fewer on every rank (one per sequence), and the last may have none.
  const int64_t split = times[0].split_steps.load();
  for (int rank = 1; rank < ranks; ++rank) CHECK(times[rank].split_steps.load() == split);
  if (overlap_min_tokens < 0 || overlap_min_tokens >= 1000) {
    CHECK(split == 0);
  } else if (overlap_min_tokens == 4) {
    CHECK(split == 1);
  } else if (overlap_min_tokens == 1) {
    CHECK(split >= steps - 1);
  }
  for (int rank = 0; rank < ranks; ++rank) {
    INFO("rank " << rank << ": " << results[rank].ToString());
    REQUIRE(results[rank].ok());
    for (size_t i = 0; i < served[rank].size(); ++i) {
      INFO("prompt " << served[rank][i]);
      const SequenceRun& got = per_rank[rank][i];
      const SequenceRun& want = expected[served[rank][i]];
      REQUIRE(got.logits.size() == want.logits.size());
      float worst = 0.0f;
      for (size_t s = 0; s < got.logits.size(); ++s) {
        for (size_t v = 0; v < got.logits[s].size(); ++v) {
          worst = std::max(worst, std::fabs(got.logits[s][v] - want.logits[s][v]));
        }
        const auto argmax = [](const std::vector<float>& l) {
          return std::max_element(l.begin(), l.end()) - l.begin();
        };
        CHECK(argmax(got.logits[s]) == argmax(want.logits[s]));
      }
      CHECK(worst <= 1e-4f);
    }
  }
}

TEST_CASE("Expert parallelism: EP = 1, 2 and 4 give the single-process logits and tokens",
          "[engine][moe][ep]") {
  const testing::MoeModelKind kind =
      GENERATE(from_range(std::begin(testing::kMoeModels), std::end(testing::kMoeModels)));
  const char* const name = kind.reference;
  const testing::MoeLoader load = kind.load;
  INFO(name);
  testing::MoeReference ref;
  std::string error;
  REQUIRE(testing::LoadMoeReference(name, ref, error));
  constexpr int kSteps = 8;  // Enough for the longer prompt (1 + 6 steps).

  // The reference: one process, every sequence.
  kernels::ThreadPool pool(1);
  absl::StatusOr<std::unique_ptr<Model>> single =
      load(ref.checkpoint_dir, ModelOptions{.pool = &pool});
  REQUIRE(single.ok());
  auto single_cache =
      kvcache::PagedKvCache::Create(KvShapeFor((*single)->config(), kBlockSize, 16));
  REQUIRE(single_cache.ok());
  std::vector<SequenceRun> expected = RunsFor(ref.prompts);
  REQUIRE(RunSteps(**single, **single_cache, expected, kSteps).ok());

  const int ranks = GENERATE(1, 2, 4);
  INFO("EP = " << ranks);
  // Data parallel attention: rank r serves prompt r % 2 (so with EP = 1 it serves one, and
  // ranks finish at different steps).
  std::vector<std::vector<size_t>> served(ranks);
  for (int rank = 0; rank < ranks; ++rank) served[rank] = {rank % ref.prompts.size()};
  CheckGroup(ref, load, ranks, /*overlap_min_tokens=*/-1, served, expected, kSteps);
}

TEST_CASE("Expert parallelism with micro-batch overlap gives the single-process logits",
          "[engine][moe][ep]") {
  const testing::MoeModelKind kind =
      GENERATE(from_range(std::begin(testing::kMoeModels), std::end(testing::kMoeModels)));
  INFO(kind.reference);
  testing::MoeReference ref;
  std::string error;
  REQUIRE(testing::LoadMoeReference(kind.reference, ref, error));
  constexpr int kSteps = 8;
  kernels::ThreadPool pool(1);
  absl::StatusOr<std::unique_ptr<Model>> single =
      kind.load(ref.checkpoint_dir, ModelOptions{.pool = &pool});
  REQUIRE(single.ok());
  auto single_cache =
      kvcache::PagedKvCache::Create(KvShapeFor((*single)->config(), kBlockSize, 16));
  REQUIRE(single_cache.ok());
  std::vector<SequenceRun> expected = RunsFor(ref.prompts);
  REQUIRE(RunSteps(**single, **single_cache, expected, kSteps).ok());

  const int ranks = GENERATE(1, 2);
  INFO("EP = " << ranks);
  // Rank 0 serves every prompt, so its steps split into two micro-batches with a sequence
  // each; another rank serves one prompt, so its second micro-batch is empty and takes part
  // in the collectives with no tokens.
  std::vector<std::vector<size_t>> served(ranks);
  for (size_t p = 0; p < ref.prompts.size(); ++p) served[0].push_back(p);
  for (int rank = 1; rank < ranks; ++rank) served[rank] = {1};
  // Every step with tokens split (1); only the prompt steps, which rank 0 alone finds large,
  // so the other rank splits because it does (4); no step split, one micro-batch everywhere
  // (1000).
  const int32_t min_tokens = GENERATE(1, 4, 1000);
  INFO("overlap from " << min_tokens << " tokens");
  CheckGroup(ref, kind.load, ranks, min_tokens, served, expected, kSteps);
}

TEST_CASE("Micro-batch overlap reports each layer once, in order, after both micro-batches",
          "[engine][moe][ep]") {
  testing::MoeReference ref;
  std::string error;
  REQUIRE(testing::LoadMoeReference(testing::kMoeModels[0].reference, ref, error));
  comm::LocalKeyValueStore store;
  auto first = comm::GlooCommunicator::Connect(store, "layers-a", 0, 1, {});
  auto second = comm::GlooCommunicator::Connect(store, "layers-b", 0, 1, {});
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  kernels::ThreadPool pool(2);
  // Split (1) and unsplit (1000) steps both report every layer.
  const int32_t min_tokens = GENERATE(1, 1000);
  auto model = testing::kMoeModels[0].load(
      ref.checkpoint_dir, ModelOptions{.pool = &pool,
                                       .expert_group = first->get(),
                                       .overlap_group = second->get(),
                                       .overlap_min_tokens = min_tokens});
  REQUIRE(model.ok());
  auto cache = kvcache::PagedKvCache::Create(KvShapeFor((*model)->config(), kBlockSize, 16));
  REQUIRE(cache.ok());
  std::vector<SequenceRun> runs = RunsFor(ref.prompts);
  std::vector<SequenceStep> batch;
  for (SequenceRun& run : runs) {
    batch.push_back({.tokens = run.prompt, .start_pos = 0, .block_table = run.blocks});
  }
  std::vector<int32_t> reported;
  ForwardOptions options{.on_layer_done = [&](int32_t layer) { reported.push_back(layer); }};
  std::vector<float> logits(batch.size() * static_cast<size_t>((*model)->config().vocab_size));
  REQUIRE((*model)->Forward(batch, **cache, logits, options).ok());
  std::vector<int32_t> want((*model)->config().num_layers);
  std::iota(want.begin(), want.end(), 0);
  CHECK(reported == want);
}

}  // namespace
}  // namespace tessera::engine
