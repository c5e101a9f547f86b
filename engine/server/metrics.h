// Prometheus metrics in the text exposition format (version 0.0.4): counters, gauges and
// histograms with labels. prometheus-cpp, the usual library, is not packaged in Debian 12
// (the build's only source of libraries), so this is the small subset the router needs,
// checked against Prometheus' own `promtool check metrics` in the tests.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_METRICS_H_
#define TESSERA_ENGINE_SERVER_METRICS_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tessera::engine::server {

// Label name/value pairs, e.g. {{"endpoint", "generate"}, {"code", "OK"}}.
using Labels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  enum class Type { kCounter, kGauge, kHistogram };

  // Declares a family once; `buckets` (upper bounds, ascending) for histograms only.
  void Declare(const std::string& name, Type type, const std::string& help,
               std::vector<double> buckets = {});

  // Precondition: the family was declared with the matching type.
  void Increment(const std::string& name, const Labels& labels = {}, double by = 1.0);
  void Set(const std::string& name, const Labels& labels, double value);
  void Observe(const std::string& name, const Labels& labels, double value);
  // Mirrors a counter kept elsewhere (a worker's, reported in its heartbeat): sets the series
  // to `value`. Clear() drops every series of a family before a new snapshot.
  void SetCounter(const std::string& name, const Labels& labels, double value);
  void Clear(const std::string& name);

  // The exposition text.
  std::string Render() const;

  // For tests: a counter or gauge series' value, or a histogram's count; 0 if absent.
  double Value(const std::string& name, const Labels& labels = {}) const;

 private:
  struct Series {
    double value = 0;               // Counter or gauge.
    std::vector<uint64_t> buckets;  // Histogram: per upper bound (not cumulative).
    uint64_t count = 0;
    double sum = 0;
  };
  struct Family {
    Type type;
    std::string help;
    std::vector<double> bounds;
    std::map<std::string, Series> series;  // By rendered label set.
  };
  static std::string RenderLabels(const Labels& labels);

  mutable absl::Mutex mu_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_METRICS_H_
