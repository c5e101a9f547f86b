// LLM serving traces: when each request arrived and how many tokens it sent and received.
// Three formats, read by column or key name, never by position:
// - BurstGPT CSV: Timestamp (seconds), Model, Request tokens, Response tokens, Total tokens,
//   Log Type; the v3 layout adds Session ID and Elapsed time.
// - Azure LLM inference CSV: TIMESTAMP (wall clock, "2023-11-16 18:17:03.9799600"),
//   ContextTokens, GeneratedTokens.
// - Mooncake JSON lines: timestamp (ms), input_length, output_length, hash_ids (ids of
//   512-token prompt blocks; equal leading ids mean a shared prompt prefix).
// A structurally malformed file (a required column or key missing, a row with the wrong
// number of fields, a line that is not JSON) is an error naming the file and line. Rows that
// parse but cannot be used (zero or negative lengths, a value that is not a number, a bad
// timestamp) are dropped and counted by reason, for the report.
// Thread-safety: values; the functions are thread-safe.
#ifndef TESSERA_BENCH_TRACE_H_
#define TESSERA_BENCH_TRACE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tessera::bench {

enum class TraceFormat { kBurstGpt, kAzure, kMooncake };
absl::string_view TraceFormatName(TraceFormat format);
// "burstgpt", "azure" or "mooncake".
absl::StatusOr<TraceFormat> ParseTraceFormat(absl::string_view name);

struct TraceRequest {
  double arrival_s = 0;  // From the trace's first request.
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  std::vector<int64_t> block_ids = {};  // Mooncake: the prompt's 512-token blocks.
  std::string model = "";               // BurstGPT: the model the request went to.
  int64_t line = 0;                     // Where it came from (1-based, header included).
};

struct Trace {
  TraceFormat format = TraceFormat::kBurstGpt;
  std::string path;
  std::vector<TraceRequest> requests;      // By arrival (stable: file order among equals).
  std::map<std::string, int64_t> dropped;  // Rows left out, by reason.
  int64_t rows = 0;                        // Data rows read, dropped ones included.
  int64_t block_tokens = 512;              // Mooncake's prompt block size.
};

// Reads `path`, in `format` or, if none, the one its first line shows (a JSON object:
// Mooncake; a header with TIMESTAMP: Azure; else BurstGPT).
absl::StatusOr<Trace> ReadTrace(const std::string& path,
                                std::optional<TraceFormat> format = std::nullopt);

// Writes `trace` as a BurstGPT CSV (the 6-column layout; Model "synthetic" where empty).
absl::Status WriteBurstGptCsv(const Trace& trace, const std::string& path);

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_TRACE_H_
