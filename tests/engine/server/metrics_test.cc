#include "engine/server/metrics.h"

#include <catch2/catch.hpp>

namespace tessera::engine::server {
namespace {

TEST_CASE("Metrics: counters, gauges and histograms render in the Prometheus text format",
          "[server]") {
  Metrics metrics;
  metrics.Declare("t_requests_total", Metrics::Type::kCounter, "Requests.");
  metrics.Declare("t_in_flight", Metrics::Type::kGauge, "In flight.");
  metrics.Declare("t_latency_seconds", Metrics::Type::kHistogram, "Latency.", {0.1, 1});
  metrics.Increment("t_requests_total", {{"code", "OK"}});
  metrics.Increment("t_requests_total", {{"code", "OK"}}, 2);
  metrics.Increment("t_requests_total", {{"code", "say \"hi\"\n"}});
  metrics.Set("t_in_flight", {}, 3);
  metrics.Observe("t_latency_seconds", {}, 0.05);
  metrics.Observe("t_latency_seconds", {}, 0.5);
  metrics.Observe("t_latency_seconds", {}, 5);
  CHECK(metrics.Value("t_requests_total", {{"code", "OK"}}) == 3);
  CHECK(metrics.Value("t_latency_seconds") == 3);
  const std::string text = metrics.Render();
  CHECK_THAT(text, Catch::Contains("# TYPE t_requests_total counter\n"));
  CHECK_THAT(text, Catch::Contains("t_requests_total{code=\"OK\"} 3\n"));
  CHECK_THAT(text, Catch::Contains("t_requests_total{code=\"say \\\"hi\\\"\\n\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("t_in_flight 3\n"));
  // Buckets are cumulative and end with +Inf.
  CHECK_THAT(text, Catch::Contains("t_latency_seconds_bucket{le=\"0.1\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("t_latency_seconds_bucket{le=\"1\"} 2\n"));
  CHECK_THAT(text, Catch::Contains("t_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
  CHECK_THAT(text, Catch::Contains("t_latency_seconds_sum 5.55\n"));
  CHECK_THAT(text, Catch::Contains("t_latency_seconds_count 3\n"));
  metrics.Clear("t_in_flight");
  CHECK_THAT(metrics.Render(), !Catch::Contains("t_in_flight 3"));
}

}  // namespace
}  // namespace tessera::engine::server
