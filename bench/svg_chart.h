// Line charts as inline SVG, so a report is one self-contained HTML file that needs no
// network and no script library: axes with round ticks, one polyline per series, a legend.
// Thread-safety: a function of its arguments.
#ifndef TESSERA_BENCH_SVG_CHART_H_
#define TESSERA_BENCH_SVG_CHART_H_

#include <string>
#include <utility>
#include <vector>

namespace tessera::bench {

struct ChartSeries {
  std::string name;
  std::vector<std::pair<double, double>> points = {};  // (x, y), drawn in order.
};

struct LineChart {
  std::string id;  // The svg element's id.
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<ChartSeries> series = {};
  bool markers = false;  // A dot at every point (for sweeps with few points).
};

std::string RenderSvg(const LineChart& chart);

// Escapes &, <, >, " and ' for HTML text and attributes.
std::string HtmlEscape(const std::string& text);

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_SVG_CHART_H_
