// Summaries of logit errors for the tests that compare Tessera with a reference pass.
#ifndef TESSERA_TESTS_ENGINE_ERROR_STATS_H_
#define TESSERA_TESTS_ENGINE_ERROR_STATS_H_

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <vector>

namespace tessera::testing {

inline double Mean(const std::vector<float>& values) {
  return std::accumulate(values.begin(), values.end(), 0.0) /
         static_cast<double>(values.size());
}

// The 99th percentile (the element 99% of the way through the sorted values).
inline float P99(std::vector<float> values) {
  auto at = values.begin() + static_cast<std::ptrdiff_t>(values.size() * 99 / 100);
  std::nth_element(values.begin(), at, values.end());
  return *at;
}

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_ENGINE_ERROR_STATS_H_
