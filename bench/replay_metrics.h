// What a trace replay measured, per request and in aggregate. Times are seconds from the
// replay's start.
// - TTFT: first token received minus request sent.
// - TPOT: (last token - first token) / (output tokens - 1), for requests with 2+ tokens.
// - ITL: every gap between consecutive token arrivals (a message carrying several tokens
//   counts one gap, then zero-length gaps for the rest).
// - End to end: last byte received minus request sent.
// Percentiles interpolate linearly between closest ranks (numpy's default), so p50 of
// {1, 2, 3, 4} is 2.5. A request meets the SLOs when it succeeded, its TTFT is at most the TTFT
// SLO and its TPOT at most the TPOT SLO (a one-token request has no TPOT and meets that one).
// Goodput is the requests meeting the SLOs per second of the replay.
// Thread-safety: values and pure functions.
#ifndef TESSERA_BENCH_REPLAY_METRICS_H_
#define TESSERA_BENCH_REPLAY_METRICS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tessera::bench {

struct RequestRecord {
  int64_t index = 0;                  // In the replayed trace.
  double scheduled_s = 0;             // When the (scaled) trace said to send it.
  double sent_s = 0;                  // When it was sent.
  std::vector<double> token_times_s;  // Arrival of each output token.
  double end_s = 0;                   // Last byte (or the error) received.
  int64_t input_tokens = 0;           // Sent.
  int64_t max_tokens = 0;             // Asked for.
  std::string status = "OK";  // gRPC code name, or HTTP status for HTTP targets ("HTTP 429").
  std::string error;          // The error message, when not OK.

  bool ok() const { return status == "OK"; }
  int64_t output_tokens() const { return static_cast<int64_t>(token_times_s.size()); }
  std::optional<double> ttft() const;
  std::optional<double> tpot() const;
  double end_to_end() const { return end_s - sent_s; }
};

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, mean = 0;
  int64_t count = 0;
};
// Of `values` (any order); all zero when empty.
Percentiles Distribution(std::vector<double> values);
double Percentile(const std::vector<double>& sorted, double p);

struct Slo {
  double ttft_s = 0;  // 0: no TTFT SLO.
  double tpot_s = 0;  // 0: no TPOT SLO.
};
bool MeetsSlo(const RequestRecord& r, const Slo& slo);

struct ReplaySummary {
  int64_t requests = 0, succeeded = 0;
  std::map<std::string, int64_t> errors;  // By status.
  double duration_s = 0;                  // First send to last response.
  double sent_per_s = 0;                  // Requests issued per second (first to last send).
  double requests_per_s = 0;              // Succeeded per second.
  double output_tokens_per_s = 0;
  double input_tokens_per_s = 0;  // Of succeeded requests.
  Percentiles ttft_s, tpot_s, itl_s, e2e_s;
  Percentiles send_lateness_s;  // Sent minus scheduled: how well the replayer kept time.
  double slo_attainment = 0;    // Share of all requests meeting the SLOs.
  double goodput = 0;           // Requests meeting the SLOs per second.
};

ReplaySummary Summarize(const std::vector<RequestRecord>& records, const Slo& slo);

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_REPLAY_METRICS_H_
