#include "bench/trace.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace tessera::bench {
namespace {

absl::Status Malformed(const std::string& path, int64_t line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ":", line, ": ", what));
}

// Splits one CSV line: commas separate fields; a field in double quotes may hold commas and
// doubled quotes. False if a quote is left open.
bool SplitCsv(absl::string_view line, std::vector<std::string>& fields) {
  fields.clear();
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.push_back(std::move(field));
      field.clear();
    } else {
      field += c;
    }
  }
  fields.push_back(std::move(field));
  return !quoted;
}

// The column of each required name in `header`, or an error naming the missing ones.
absl::StatusOr<std::vector<size_t>> FindColumns(const std::vector<std::string>& header,
                                                const std::vector<std::string>& names,
                                                const std::string& path) {
  std::vector<size_t> columns;
  std::vector<std::string> missing;
  for (const std::string& name : names) {
    auto it = std::find_if(header.begin(), header.end(), [&](const std::string& h) {
      return absl::StripAsciiWhitespace(h) == name;
    });
    if (it == header.end()) {
      missing.push_back(name);
    } else {
      columns.push_back(static_cast<size_t>(it - header.begin()));
    }
  }
  if (!missing.empty()) {
    return Malformed(path, 1,
                     absl::StrCat("the header lacks column(s) \"", absl::StrJoin(missing, "\", \""),
                                  "\" (it has \"", absl::StrJoin(header, "\", \""), "\")"));
  }
  return columns;
}

bool ParseCount(absl::string_view text, int64_t& value) {
  text = absl::StripAsciiWhitespace(text);
  if (absl::SimpleAtoi(text, &value)) return true;
  // Some exports write counts as floats ("12.0").
  double d = 0;
  if (!absl::SimpleAtod(text, &d) || !std::isfinite(d) || d != std::floor(d)) return false;
  value = static_cast<int64_t>(d);
  return true;
}

// Checks the lengths; the reason to drop the row, or empty to keep it.
std::string LengthProblem(int64_t input, int64_t output, absl::string_view input_name,
                          absl::string_view output_name) {
  if (input <= 0) return absl::StrCat(input == 0 ? "zero " : "negative ", input_name);
  if (output <= 0) return absl::StrCat(output == 0 ? "zero " : "negative ", output_name);
  return "";
}

absl::StatusOr<TraceFormat> Detect(const std::string& path, absl::string_view first_line) {
  absl::string_view line = absl::StripAsciiWhitespace(first_line);
  if (absl::StartsWith(line, "{")) return TraceFormat::kMooncake;
  if (absl::StrContains(line, "TIMESTAMP")) return TraceFormat::kAzure;
  if (absl::StrContains(line, "Timestamp")) return TraceFormat::kBurstGpt;
  return Malformed(path, 1,
                   "not a trace this tool reads (BurstGPT or Azure CSV with a header, or Mooncake "
                   "JSON lines)");
}

absl::Status ReadCsv(std::istream& in, Trace& trace) {
  const bool azure = trace.format == TraceFormat::kAzure;
  const std::vector<std::string> names =
      azure ? std::vector<std::string>{"TIMESTAMP", "ContextTokens", "GeneratedTokens"}
            : std::vector<std::string>{"Timestamp", "Request tokens", "Response tokens"};
  std::string line;
  std::vector<std::string> fields;
  if (!std::getline(in, line)) return Malformed(trace.path, 1, "empty file");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (!SplitCsv(line, fields)) return Malformed(trace.path, 1, "unterminated quote");
  const size_t width = fields.size();
  absl::StatusOr<std::vector<size_t>> columns = FindColumns(fields, names, trace.path);
  if (!columns.ok()) return columns.status();
  std::optional<size_t> model_column;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (absl::StripAsciiWhitespace(fields[i]) == "Model") model_column = i;
  }
  std::optional<absl::Time> start;
  int64_t number = 1;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (!SplitCsv(line, fields)) return Malformed(trace.path, number, "unterminated quote");
    if (fields.size() != width) {
      return Malformed(trace.path, number,
                       absl::StrCat(fields.size(), " fields, the header has ", width));
    }
    ++trace.rows;
    TraceRequest r;
    r.line = number;
    const std::string& time_text = fields[(*columns)[0]];
    bool time_ok = false;
    if (azure) {
      absl::Time t;
      std::string error;
      time_ok =
          absl::ParseTime("%Y-%m-%d %H:%M:%E*S", std::string(absl::StripAsciiWhitespace(time_text)),
                          absl::UTCTimeZone(), &t, &error);
      if (time_ok) {
        if (!start.has_value()) start = t;  // The first row is the trace's start.
        r.arrival_s = absl::ToDoubleSeconds(t - *start);
      }
    } else {
      time_ok = absl::SimpleAtod(absl::StripAsciiWhitespace(time_text), &r.arrival_s) &&
                std::isfinite(r.arrival_s) && r.arrival_s >= 0;
    }
    if (!time_ok) {
      ++trace.dropped["unparseable timestamp"];
      continue;
    }
    if (!ParseCount(fields[(*columns)[1]], r.input_tokens) ||
        !ParseCount(fields[(*columns)[2]], r.output_tokens)) {
      ++trace.dropped["unparseable token count"];
      continue;
    }
    const std::string problem =
        azure ? LengthProblem(r.input_tokens, r.output_tokens, "context tokens", "generated tokens")
              : LengthProblem(r.input_tokens, r.output_tokens, "request tokens", "response tokens");
    if (!problem.empty()) {
      ++trace.dropped[problem];
      continue;
    }
    if (model_column.has_value()) {
      r.model = std::string(absl::StripAsciiWhitespace(fields[*model_column]));
    }
    trace.requests.push_back(std::move(r));
  }
  return absl::OkStatus();
}

absl::Status ReadMooncake(std::istream& in, Trace& trace) {
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    const nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (row.is_discarded() || !row.is_object()) {
      return Malformed(trace.path, number, "not a JSON object");
    }
    for (const char* key : {"timestamp", "input_length", "output_length"}) {
      if (!row.contains(key)) {
        return Malformed(trace.path, number, absl::StrCat("missing \"", key, "\""));
      }
    }
    ++trace.rows;
    TraceRequest r;
    r.line = number;
    if (!row["timestamp"].is_number() || !(row["timestamp"].get<double>() >= 0)) {
      ++trace.dropped["unparseable timestamp"];
      continue;
    }
    r.arrival_s = row["timestamp"].get<double>() / 1000.0;
    if (!row["input_length"].is_number_integer() || !row["output_length"].is_number_integer()) {
      ++trace.dropped["unparseable token count"];
      continue;
    }
    r.input_tokens = row["input_length"].get<int64_t>();
    r.output_tokens = row["output_length"].get<int64_t>();
    const std::string problem =
        LengthProblem(r.input_tokens, r.output_tokens, "input length", "output length");
    if (!problem.empty()) {
      ++trace.dropped[problem];
      continue;
    }
    if (row.contains("hash_ids")) {
      const nlohmann::json& ids = row["hash_ids"];
      bool ok = ids.is_array();
      for (size_t i = 0; ok && i < ids.size(); ++i) ok = ids[i].is_number_integer();
      if (!ok) {
        ++trace.dropped["unparseable hash_ids"];
        continue;
      }
      r.block_ids = ids.get<std::vector<int64_t>>();
    }
    trace.requests.push_back(std::move(r));
  }
  if (number == 0) return Malformed(trace.path, 1, "empty file");
  return absl::OkStatus();
}

}  // namespace

absl::string_view TraceFormatName(TraceFormat format) {
  switch (format) {
    case TraceFormat::kBurstGpt:
      return "burstgpt";
    case TraceFormat::kAzure:
      return "azure";
    case TraceFormat::kMooncake:
      return "mooncake";
  }
  return "unknown";
}

absl::StatusOr<TraceFormat> ParseTraceFormat(absl::string_view name) {
  for (TraceFormat f : {TraceFormat::kBurstGpt, TraceFormat::kAzure, TraceFormat::kMooncake}) {
    if (name == TraceFormatName(f)) return f;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("trace format must be burstgpt, azure or mooncake, got \"", name, "\""));
}

absl::StatusOr<Trace> ReadTrace(const std::string& path, std::optional<TraceFormat> format) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  Trace trace;
  trace.path = path;
  if (!format.has_value()) {
    std::string first;
    std::getline(in, first);
    absl::StatusOr<TraceFormat> detected = Detect(path, first);
    if (!detected.ok()) return detected.status();
    format = *detected;
    in.clear();
    in.seekg(0);
  }
  trace.format = *format;
  absl::Status status =
      *format == TraceFormat::kMooncake ? ReadMooncake(in, trace) : ReadCsv(in, trace);
  if (!status.ok()) return status;
  if (trace.requests.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no usable requests (", trace.rows, " rows, all dropped)"));
  }
  // Arrival order; the trace's first request is time 0.
  std::stable_sort(
      trace.requests.begin(), trace.requests.end(),
      [](const TraceRequest& a, const TraceRequest& b) { return a.arrival_s < b.arrival_s; });
  const double first = trace.requests.front().arrival_s;
  for (TraceRequest& r : trace.requests) r.arrival_s -= first;
  return trace;
}

namespace {

// A CSV field, quoted when it holds a comma, quote or line break.
std::string CsvField(absl::string_view text) {
  if (text.find_first_of(",\"\r\n") == absl::string_view::npos) return std::string(text);
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

}  // namespace

absl::Status WriteBurstGptCsv(const Trace& trace, const std::string& path) {
  std::ofstream out(path);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  out << "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n";
  for (const TraceRequest& r : trace.requests) {
    out << absl::StrFormat("%.6f,%s,%d,%d,%d,API log\n", r.arrival_s,
                           CsvField(r.model.empty() ? "synthetic" : r.model), r.input_tokens,
                           r.output_tokens, r.input_tokens + r.output_tokens);
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace tessera::bench
