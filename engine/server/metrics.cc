#include "engine/server/metrics.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/check.h"

namespace tessera::engine::server {
namespace {

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  return absl::StrFormat("%.12g", v);
}

// Joins a rendered label set ("{a=\"1\"}" or "") with one more label.
std::string WithLabel(const std::string& rendered, const std::string& name,
                      const std::string& value) {
  std::string extra = absl::StrCat(name, "=\"", value, "\"");
  if (rendered.empty()) return absl::StrCat("{", extra, "}");
  return absl::StrCat(rendered.substr(0, rendered.size() - 1), ",", extra, "}");
}

}  // namespace

std::string Metrics::RenderLabels(const Labels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    absl::StrAppend(&out, i ? "," : "", labels[i].first, "=\"", EscapeLabelValue(labels[i].second),
                    "\"");
  }
  return out + "}";
}

void Metrics::Declare(const std::string& name, Type type, const std::string& help,
                      std::vector<double> buckets) {
  absl::MutexLock lock(&mu_);
  Family& family = families_[name];
  family.type = type;
  family.help = help;
  std::sort(buckets.begin(), buckets.end());
  family.bounds = std::move(buckets);
}

void Metrics::Increment(const std::string& name, const Labels& labels, double by) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  TESSERA_CHECK(it != families_.end() && it->second.type == Type::kCounter);
  it->second.series[RenderLabels(labels)].value += by;
}

void Metrics::Set(const std::string& name, const Labels& labels, double value) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  TESSERA_CHECK(it != families_.end() && it->second.type == Type::kGauge);
  it->second.series[RenderLabels(labels)].value = value;
}

void Metrics::SetCounter(const std::string& name, const Labels& labels, double value) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  TESSERA_CHECK(it != families_.end() && it->second.type == Type::kCounter);
  it->second.series[RenderLabels(labels)].value = value;
}

void Metrics::Clear(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  TESSERA_CHECK(it != families_.end());
  it->second.series.clear();
}

void Metrics::Observe(const std::string& name, const Labels& labels, double value) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  TESSERA_CHECK(it != families_.end() && it->second.type == Type::kHistogram);
  Family& family = it->second;
  Series& series = family.series[RenderLabels(labels)];
  series.buckets.resize(family.bounds.size());
  size_t bucket = std::lower_bound(family.bounds.begin(), family.bounds.end(), value) -
                  family.bounds.begin();
  if (bucket < family.bounds.size()) ++series.buckets[bucket];
  ++series.count;
  series.sum += value;
}

double Metrics::Value(const std::string& name, const Labels& labels) const {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto s = it->second.series.find(RenderLabels(labels));
  if (s == it->second.series.end()) return 0;
  return it->second.type == Type::kHistogram ? static_cast<double>(s->second.count)
                                             : s->second.value;
}

std::string Metrics::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, family] : families_) {
    const char* type = family.type == Type::kCounter ? "counter"
                       : family.type == Type::kGauge ? "gauge"
                                                     : "histogram";
    absl::StrAppend(&out, "# HELP ", name, " ", family.help, "\n# TYPE ", name, " ", type, "\n");
    for (const auto& [labels, series] : family.series) {
      if (family.type != Type::kHistogram) {
        absl::StrAppend(&out, name, labels, " ", FormatValue(series.value), "\n");
        continue;
      }
      uint64_t cumulative = 0;
      for (size_t b = 0; b < family.bounds.size(); ++b) {
        cumulative += b < series.buckets.size() ? series.buckets[b] : 0;
        absl::StrAppend(&out, name, "_bucket", WithLabel(labels, "le", FormatValue(family.bounds[b])),
                        " ", cumulative, "\n");
      }
      absl::StrAppend(&out, name, "_bucket", WithLabel(labels, "le", "+Inf"), " ", series.count,
                      "\n");
      absl::StrAppend(&out, name, "_sum", labels, " ", FormatValue(series.sum), "\n");
      absl::StrAppend(&out, name, "_count", labels, " ", series.count, "\n");
    }
  }
  return out;
}

}  // namespace tessera::engine::server
