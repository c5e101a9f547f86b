#include "engine/models/hf_decoder_model.h"

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "common/status_macros.h"
#include "engine/models/step_validation.h"

namespace tessera::engine {

// A thread kept for the life of the model to run lane 1 of each step: starting a thread per
// step would cost more than a decode step's communication.
class HfDecoderModel::LaneThread {
 public:
  LaneThread() : thread_([this] { Loop(); }) {}
  ~LaneThread() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }

  void Start(std::function<void()> work) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      work_ = std::move(work);
    }
    changed_.notify_all();
  }

  void Wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return work_ == nullptr; });
  }

 private:
  void Loop() {
    kernels::FlushDenormalsOnThisThread();  // As the pool's threads, so results match.
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
      changed_.wait(lock, [this] { return stop_ || work_ != nullptr; });
      if (stop_) return;
      lock.unlock();
      work_();
      lock.lock();
      work_ = nullptr;
      changed_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::function<void()> work_;  // Set while lane 1 has work.
  bool stop_ = false;
  std::thread thread_;
};

// Reports each layer to ForwardOptions::on_layer_done once every lane has finished it, in
// layer order and one call at a time, whichever lane's thread gets there last.
class HfDecoderModel::LayerProgress {
 public:
  LayerProgress(const std::function<void(int32_t)>& on_layer_done, int lanes)
      : on_layer_done_(on_layer_done), done_(static_cast<size_t>(lanes), 0) {}

  void Done(int lane, int32_t layer) {
    if (!on_layer_done_) return;
    std::lock_guard<std::mutex> lock(mutex_);
    done_[static_cast<size_t>(lane)] = layer + 1;
    const int32_t all = *std::min_element(done_.begin(), done_.end());
    while (reported_ < all) on_layer_done_(reported_++);
  }

 private:
  const std::function<void(int32_t)>& on_layer_done_;
  std::mutex mutex_;
  std::vector<int32_t> done_;  // Per lane: layers finished.
  int32_t reported_ = 0;
};

HfDecoderModel::HfDecoderModel(const ModelOptions& options)
    : pool_(*options.pool),
      moe_times_(options.moe_times),
      balancing_{options.redundant_experts, options.rebalance_interval},
      overlap_min_tokens_(options.overlap_min_tokens) {
  if (options.expert_group != nullptr) expert_lanes_.push_back(options.expert_group);
  if (options.overlap_group != nullptr) expert_lanes_.push_back(options.overlap_group);
  lanes_.resize(expert_lanes_.size() == 2 ? 2 : 1);
  for (size_t i = 0; i < lanes_.size(); ++i) {
    lanes_[i].lane = static_cast<int>(i);
    if (lanes_.size() == 2) lanes_[i].baton = &baton_;
  }
  if (lanes_.size() == 2) lane_thread_ = std::make_unique<LaneThread>();
}

HfDecoderModel::~HfDecoderModel() = default;

absl::Status HfDecoderModel::Forward(std::span<const SequenceStep> batch,
                                     kvcache::PagedKvCache& cache, std::span<float> logits,
                                     const ForwardOptions& options) {
  TESSERA_RETURN_IF_ERROR(ValidateStep(config_, batch, cache, logits));
  if (num_lanes() == 1) {
    LayerProgress progress(options.on_layer_done, 1);
    lanes_[0].batch = batch;
    return RunMicroBatch(lanes_[0], cache, logits, progress);
  }
  // Whole sequences to each lane (a prompt chunk's tokens attend to each other), the first
  // ones to lane 0 until it holds half the tokens. Lane 1 may be empty; it still takes part
  // in every collective.
  int64_t total = 0;
  for (const SequenceStep& s : batch) total += static_cast<int64_t>(s.tokens.size());
  // Splitting pays only for large steps, and the ranks must agree (lane 1's collectives need
  // every rank): the step splits everywhere if it is large on any rank, else runs as one
  // micro-batch everywhere.
  int64_t large = total >= overlap_min_tokens_ ? 1 : 0;
  TESSERA_RETURN_IF_ERROR(expert_lanes_[0]->AllReduceSum(std::span<int64_t>(&large, 1)));
  if (large == 0) {
    LayerProgress progress(options.on_layer_done, 1);
    lanes_[0].batch = batch;
    return RunMicroBatch(lanes_[0], cache, logits, progress);
  }
  LayerProgress progress(options.on_layer_done, 2);
  if (moe_times_ != nullptr) moe_times_->split_steps.fetch_add(1, std::memory_order_relaxed);
  size_t split = 0;
  int64_t first_tokens = 0;
  size_t first_logits = 0;
  while (split < batch.size() && 2 * first_tokens < total) {
    first_tokens += static_cast<int64_t>(batch[split].tokens.size());
    if (batch[split].want_logits) ++first_logits;
    ++split;
  }
  lanes_[0].batch = batch.first(split);
  lanes_[1].batch = batch.subspan(split);
  const size_t vocab = static_cast<size_t>(config_.vocab_size);
  absl::Status second;
  // Lane 1 works on this frame's locals: wait for it however the frame is left.
  struct JoinLane {
    LaneThread& lane;
    ~JoinLane() { lane.Wait(); }
  } join{*lane_thread_};
  lane_thread_->Start([&] {
    second = RunMicroBatch(lanes_[1], cache, logits.subspan(first_logits * vocab), progress);
  });
  absl::Status first =
      RunMicroBatch(lanes_[0], cache, logits.first(first_logits * vocab), progress);
  lane_thread_->Wait();
  TESSERA_RETURN_IF_ERROR(first);
  return second;
}

absl::Status HfDecoderModel::RunMicroBatch(MicroBatch& mb, kvcache::PagedKvCache& cache,
                                           std::span<float> logits, LayerProgress& progress) {
  BatonHeld computing(mb.baton);
  const int64_t hidden = config_.hidden_size;
  mb.step.Gather(mb.batch);
  mb.tokens = mb.step.count;
  mb.x.resize(static_cast<size_t>(mb.tokens * hidden));
  mb.normed.resize(static_cast<size_t>(mb.tokens * hidden));
  EmbedTokens(embedding_, hidden, mb.batch, mb.x.data());
  for (int32_t layer = 0; layer < config_.num_layers; ++layer) {
    if (mb.tokens > 0) Attention(layer, mb, cache);
    progress.Done(mb.lane, layer);
    TESSERA_RETURN_IF_ERROR(FeedForward(layer, mb));
  }
  OutputLogits(mb.x.data(), hidden, mb.step.logit_rows, final_norm_, config_.rms_norm_epsilon,
               lm_head_, config_.vocab_size, logits_scratch_[mb.lane], logits, pool_);
  return absl::OkStatus();
}

absl::Status HfDecoderModel::LoadEmbeddingsAndHead(const HfCheckpoint& ck, bool tied) {
  const int64_t hidden = config_.hidden_size;
  const int64_t vocab = config_.vocab_size;
  TESSERA_ASSIGN_OR_RETURN(embedding_, ck.Tensor("model.embed_tokens.weight", {vocab, hidden}));
  TESSERA_ASSIGN_OR_RETURN(final_norm_, ck.Tensor("model.norm.weight", {hidden}));
  if (tied || !ck.HasTensor("lm_head.weight")) {
    lm_head_ = embedding_;
    return absl::OkStatus();
  }
  TESSERA_ASSIGN_OR_RETURN(lm_head_, ck.Tensor("lm_head.weight", {vocab, hidden}));
  return absl::OkStatus();
}

}  // namespace tessera::engine
