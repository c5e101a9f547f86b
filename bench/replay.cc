#include "bench/replay.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "bench/http_sender.h"
#include "tessera/v1/inference.grpc.pb.h"

namespace tessera::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point base) {
  return std::chrono::duration<double>(Clock::now() - base).count();
}

// Counts finished requests; RunReplay waits on it.
class Tracker {
 public:
  void Sent() { sent_.fetch_add(1, std::memory_order_relaxed); }
  void Done(bool error) {
    if (error) errors_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mutex_);
    ++done_;
    changed_.notify_all();
  }
  // Every call ends by its deadline, so this returns.
  void WaitAll(int64_t total) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return done_ >= total; });
  }
  int64_t sent() const { return sent_.load(std::memory_order_relaxed); }
  int64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  int64_t done() {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_;
  }

 private:
  std::atomic<int64_t> sent_{0}, errors_{0};
  std::mutex mutex_;
  std::condition_variable changed_;
  int64_t done_ = 0;
};

// One streaming Generate call; deletes itself when done. Only gRPC's callbacks touch its
// record, one at a time, until OnDone.
class GrpcStream final : public grpc::ClientReadReactor<tessera::v1::GenerateResponse> {
 public:
  GrpcStream(tessera::v1::Inference::Stub& stub, const PlannedRequest& planned,
             const ReplayOptions& options, Clock::time_point base, RequestRecord& record,
             Tracker& tracker)
      : stub_(stub), base_(base), record_(record), tracker_(tracker) {
    request_.set_request_id(absl::StrCat("replay-", planned.index));
    if (!options.model.empty()) request_.set_model(options.model);
    request_.mutable_tokens()->mutable_ids()->Assign(planned.prompt.begin(), planned.prompt.end());
    tessera::v1::SamplingParams* sampling = request_.mutable_sampling();
    sampling->set_max_tokens(static_cast<int32_t>(planned.max_tokens));
    sampling->set_ignore_eos(true);
    sampling->set_temperature(0);
    context_.set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::milliseconds(static_cast<int64_t>(options.request_timeout_s * 1000)));
  }

  void Start() {
    stub_.async()->Generate(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // The stream ended; OnDone follows.
    const double now = Since(base_);
    for (int i = 0; i < response_.token_ids_size(); ++i) record_.token_times_s.push_back(now);
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    record_.end_s = Since(base_);
    if (!status.ok()) {
      record_.status = absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
      record_.error = status.error_message();
    }
    tracker_.Done(!status.ok());
    delete this;
  }

 private:
  tessera::v1::Inference::Stub& stub_;
  const Clock::time_point base_;
  RequestRecord& record_;
  Tracker& tracker_;
  grpc::ClientContext context_;
  tessera::v1::GenerateRequest request_;
  tessera::v1::GenerateResponse response_;
};

// Waits until `due` on the steady clock: sleeps most of the way, then spins, so a request
// leaves within microseconds of its time.
void WaitUntil(Clock::time_point due) {
  constexpr auto kSpin = std::chrono::microseconds(300);
  if (Clock::now() < due - kSpin) std::this_thread::sleep_until(due - kSpin);
  while (Clock::now() < due) {
  }
}

}  // namespace

absl::StatusOr<ReplayPlan> PlanReplay(const Trace& trace, const ReplayOptions& o,
                                      const PromptSynthesizer& prompts) {
  if (!(o.time_scale > 0) || !(o.length_scale > 0)) {
    return absl::InvalidArgumentError("--time-scale and --length-scale must be positive");
  }
  if (o.context < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("the context (", o.context, " tokens) leaves no room for a request"));
  }
  const bool http = absl::StartsWith(o.target, "http://");
  ReplayPlan plan;
  int64_t clipped_input = 0, clipped_output = 0, beyond_duration = 0;
  const int64_t block_tokens =
      std::max<int64_t>(1, std::llround(static_cast<double>(trace.block_tokens) * o.length_scale));
  for (size_t i = 0; i < trace.requests.size(); ++i) {
    const TraceRequest& r = trace.requests[i];
    if (o.max_requests > 0 && static_cast<int64_t>(plan.requests.size()) >= o.max_requests) break;
    const double at = r.arrival_s / o.time_scale;
    if (o.duration_s > 0 && at > o.duration_s) {
      beyond_duration = static_cast<int64_t>(trace.requests.size() - i);
      break;
    }
    int64_t input = std::max<int64_t>(1, std::llround(r.input_tokens * o.length_scale));
    int64_t output = std::max<int64_t>(1, std::llround(r.output_tokens * o.length_scale));
    if (output > o.context / 2 && input + output > o.context) {
      output = std::max<int64_t>(1, o.context / 2);
      ++clipped_output;
    }
    if (input + output > o.context) {
      input = o.context - output;
      ++clipped_input;
    }
    PlannedRequest p;
    p.index = static_cast<int64_t>(i);
    p.at_s = at;
    p.max_tokens = output;
    const uint64_t seed = (static_cast<uint64_t>(i) + 1) ^ (o.prompt_salt * 0x9E3779B97F4A7C15ULL);
    p.prompt = r.block_ids.empty()
                   ? prompts.Tokens(input, seed)
                   : prompts.BlockTokens(r.block_ids, block_tokens, input, seed, o.prompt_salt);
    if (http) p.text = prompts.Text(p.prompt);  // Only HTTP targets send text.
    plan.requests.push_back(std::move(p));
  }
  if (plan.requests.empty()) {
    return absl::InvalidArgumentError("no requests to replay (check --max-requests, --duration)");
  }
  plan.notes.push_back(absl::StrCat("arrival times / ", o.time_scale, "; lengths x ",
                                    o.length_scale, "; ", plan.requests.size(), " of ",
                                    trace.requests.size(), " requests"));
  if (!trace.dropped.empty()) {
    std::string dropped = "dropped from the trace:";
    for (const auto& [reason, count] : trace.dropped) {
      absl::StrAppend(&dropped, " ", count, " (", reason, ")");
    }
    plan.notes.push_back(dropped);
  }
  if (clipped_input > 0 || clipped_output > 0) {
    plan.notes.push_back(absl::StrCat("clipped to the ", o.context,
                                      "-token context: ", clipped_input, " prompts cut, ",
                                      clipped_output, " responses cut to half the context"));
  }
  if (beyond_duration > 0) {
    plan.notes.push_back(
        absl::StrCat(beyond_duration, " requests after --duration ", o.duration_s, " s left out"));
  }
  if (trace.format == TraceFormat::kMooncake) {
    plan.notes.push_back(absl::StrCat("prompt blocks of ", block_tokens,
                                      " tokens (the trace's 512 x length scale)"));
  }
  return plan;
}

absl::StatusOr<std::vector<RequestRecord>> RunReplay(const ReplayPlan& plan,
                                                     const ReplayOptions& o) {
  const bool grpc = absl::StartsWith(o.target, "grpc://");
  if (!grpc && !absl::StartsWith(o.target, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--target must be grpc://HOST:PORT or http://HOST:PORT, got \"", o.target, "\""));
  }
  const std::string address = o.target.substr(7);
  std::vector<std::unique_ptr<tessera::v1::Inference::Stub>> stubs;
  for (int c = 0; grpc && c < std::max(1, o.connections); ++c) {
    grpc::ChannelArguments args;
    args.SetInt("tessera.replay_connection", c);  // Distinct arguments: distinct connections.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(64 << 20);
    stubs.push_back(tessera::v1::Inference::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
  }
  std::vector<RequestRecord> records(plan.requests.size());
  Tracker tracker;
  std::atomic<bool> finished{false};
  std::thread progress;
  if (o.on_progress) {
    progress = std::thread([&] {
      while (!finished.load()) {
        o.on_progress(tracker.sent(), tracker.done(), tracker.errors());
        for (int i = 0; i < 10 && !finished.load(); ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
      o.on_progress(tracker.sent(), tracker.done(), tracker.errors());
    });
  }
  const Clock::time_point base = Clock::now();
  std::unique_ptr<HttpSender> http;
  if (!grpc) {
    std::string url = o.target;
    while (!url.empty() && url.back() == '/') url.pop_back();
    http = std::make_unique<HttpSender>(url, o.model, o.request_timeout_s, base,
                                        [&tracker](bool error) { tracker.Done(error); });
  }
  for (size_t i = 0; i < plan.requests.size(); ++i) {
    const PlannedRequest& p = plan.requests[i];
    RequestRecord& record = records[i];
    record.index = p.index;
    record.scheduled_s = p.at_s;
    record.input_tokens = static_cast<int64_t>(p.prompt.size());
    record.max_tokens = p.max_tokens;
    WaitUntil(base +
              std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(p.at_s)));
    if (http != nullptr) {
      record.sent_s = Since(base);
      tracker.Sent();
      http->Send(p.text, record);
      continue;
    }
    auto* stream = new GrpcStream(*stubs[i % stubs.size()], p, o, base, record, tracker);
    record.sent_s = Since(base);
    tracker.Sent();
    stream->Start();
  }
  tracker.WaitAll(static_cast<int64_t>(records.size()));
  finished = true;
  if (progress.joinable()) progress.join();
  return records;
}

}  // namespace tessera::bench
