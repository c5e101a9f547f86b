#include "bench/replay_metrics.h"

#include <algorithm>
#include <numeric>

namespace tessera::bench {

std::optional<double> RequestRecord::ttft() const {
  if (token_times_s.empty()) return std::nullopt;
  return token_times_s.front() - sent_s;
}

std::optional<double> RequestRecord::tpot() const {
  if (token_times_s.size() < 2) return std::nullopt;
  return (token_times_s.back() - token_times_s.front()) /
         static_cast<double>(token_times_s.size() - 1);
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t low = static_cast<size_t>(rank);
  const size_t high = std::min(low + 1, sorted.size() - 1);
  return sorted[low] + (rank - static_cast<double>(low)) * (sorted[high] - sorted[low]);
}

Percentiles Distribution(std::vector<double> values) {
  Percentiles p;
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  p.count = static_cast<int64_t>(values.size());
  p.p50 = Percentile(values, 50);
  p.p90 = Percentile(values, 90);
  p.p99 = Percentile(values, 99);
  p.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  return p;
}

bool MeetsSlo(const RequestRecord& r, const Slo& slo) {
  if (!r.ok()) return false;
  const std::optional<double> ttft = r.ttft();
  if (slo.ttft_s > 0 && (!ttft.has_value() || *ttft > slo.ttft_s)) return false;
  const std::optional<double> tpot = r.tpot();
  if (slo.tpot_s > 0 && tpot.has_value() && *tpot > slo.tpot_s) return false;
  return true;
}

ReplaySummary Summarize(const std::vector<RequestRecord>& records, const Slo& slo) {
  ReplaySummary s;
  s.requests = static_cast<int64_t>(records.size());
  if (records.empty()) return s;
  std::vector<double> ttft, tpot, itl, e2e, lateness;
  double first = records.front().sent_s, last = records.front().end_s;
  int64_t output = 0, input = 0, meeting = 0;
  for (const RequestRecord& r : records) {
    first = std::min(first, r.sent_s);
    last = std::max(last, r.end_s);
    lateness.push_back(r.sent_s - r.scheduled_s);
    if (!r.ok()) {
      ++s.errors[r.status];
      continue;
    }
    ++s.succeeded;
    output += r.output_tokens();
    input += r.input_tokens;
    if (auto t = r.ttft()) ttft.push_back(*t);
    if (auto t = r.tpot()) tpot.push_back(*t);
    for (size_t i = 1; i < r.token_times_s.size(); ++i) {
      itl.push_back(r.token_times_s[i] - r.token_times_s[i - 1]);
    }
    e2e.push_back(r.end_to_end());
    if (MeetsSlo(r, slo)) ++meeting;
  }
  s.duration_s = last - first;
  double last_sent = first;
  for (const RequestRecord& r : records) last_sent = std::max(last_sent, r.sent_s);
  if (records.size() > 1 && last_sent > first) {
    s.sent_per_s = static_cast<double>(records.size() - 1) / (last_sent - first);
  }
  if (s.duration_s > 0) {
    s.requests_per_s = static_cast<double>(s.succeeded) / s.duration_s;
    s.output_tokens_per_s = static_cast<double>(output) / s.duration_s;
    s.input_tokens_per_s = static_cast<double>(input) / s.duration_s;
    s.goodput = static_cast<double>(meeting) / s.duration_s;
  }
  s.ttft_s = Distribution(std::move(ttft));
  s.tpot_s = Distribution(std::move(tpot));
  s.itl_s = Distribution(std::move(itl));
  s.e2e_s = Distribution(std::move(e2e));
  s.send_lateness_s = Distribution(std::move(lateness));
  s.slo_attainment = static_cast<double>(meeting) / static_cast<double>(s.requests);
  return s;
}

}  // namespace tessera::bench
