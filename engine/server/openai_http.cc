#include "engine/server/openai_http.h"

#include <httplib.h>

#include <chrono>
#include <map>
#include <optional>
#include <variant>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/server/proto_convert.h"
#include "nlohmann/json.hpp"

namespace tessera::engine::server {
namespace {

using nlohmann::json;

// An error with the OpenAI request field it is about (empty: none).
struct HttpError {
  absl::Status status;
  std::string param;
};

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kCancelled:
      return 499;
    default:
      return 500;
  }
}

// The request field an engine message names ("sampling.top_p must ..." -> "top_p").
std::string ParamOf(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kInvalidArgument) return "";
  absl::string_view message = status.message();
  absl::ConsumePrefix(&message, "sampling.");
  size_t end = message.find_first_of(" :[");
  std::string param(message.substr(0, end));
  if (param == "tokens.ids" || param == "tokens") param = "prompt";
  return param;
}

json ErrorBody(const HttpError& error) {
  const int http = HttpStatusFor(error.status.code());
  const char* type = http == 400   ? "invalid_request_error"
                     : http == 404 ? "not_found_error"
                     : http == 429 ? "rate_limit_error"
                     : http == 503 ? "service_unavailable_error"
                                   : "server_error";
  json param = error.param.empty() ? json(nullptr) : json(error.param);
  return {{"error",
           {{"message", std::string(error.status.message())},
            {"type", type},
            {"param", param},
            {"code", absl::StatusCodeToString(error.status.code())}}}};
}

void SendError(httplib::Response& res, const HttpError& error) {
  res.status = HttpStatusFor(error.status.code());
  res.set_content(ErrorBody(error).dump(), "application/json");
}

HttpError Invalid(const std::string& param, const std::string& message) {
  return {absl::InvalidArgumentError(message), param};
}

// Typed readers of optional request fields; a present field of the wrong type is an error
// naming it.
std::optional<HttpError> ReadNumber(const json& body, const char* field,
                                    std::optional<double>* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) return Invalid(field, absl::StrCat(field, " must be a number"));
  *out = it->get<double>();
  return std::nullopt;
}

std::optional<HttpError> ReadInteger(const json& body, const char* field,
                                     std::optional<int64_t>* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer() && !it->is_number_unsigned()) {
    return Invalid(field, absl::StrCat(field, " must be an integer"));
  }
  *out = it->get<int64_t>();
  return std::nullopt;
}

std::optional<HttpError> ReadBool(const json& body, const char* field, bool* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return Invalid(field, absl::StrCat(field, " must be true or false"));
  *out = it->get<bool>();
  return std::nullopt;
}

struct ParsedRequest {
  tessera::v1::GenerateRequest request;
  bool stream = false;
  bool include_usage = false;
};

// The sampling fields both endpoints share, with OpenAI's defaults (temperature 1).
std::optional<HttpError> ReadSampling(const json& body, int64_t default_max_tokens,
                                      tessera::v1::SamplingParams* sampling) {
  std::optional<double> temperature, top_p, min_p, repetition, frequency, presence;
  std::optional<int64_t> max_tokens, max_completion_tokens, top_k, seed, n;
  bool ignore_eos = false;
  for (auto error :
       {ReadNumber(body, "temperature", &temperature), ReadNumber(body, "top_p", &top_p),
        ReadNumber(body, "min_p", &min_p), ReadNumber(body, "repetition_penalty", &repetition),
        ReadNumber(body, "frequency_penalty", &frequency),
        ReadNumber(body, "presence_penalty", &presence),
        ReadInteger(body, "max_tokens", &max_tokens),
        ReadInteger(body, "max_completion_tokens", &max_completion_tokens),
        ReadInteger(body, "top_k", &top_k), ReadInteger(body, "seed", &seed),
        ReadInteger(body, "n", &n), ReadBool(body, "ignore_eos", &ignore_eos)}) {
    if (error.has_value()) return error;
  }
  if (n.has_value() && *n != 1) return Invalid("n", "n must be 1 (one choice per request)");
  if (top_k.has_value() && *top_k == -1) top_k = 0;  // vLLM's "off".
  sampling->set_temperature(static_cast<float>(temperature.value_or(1.0)));
  if (top_p) sampling->set_top_p(static_cast<float>(*top_p));
  if (min_p) sampling->set_min_p(static_cast<float>(*min_p));
  if (repetition) sampling->set_repetition_penalty(static_cast<float>(*repetition));
  if (frequency) sampling->set_frequency_penalty(static_cast<float>(*frequency));
  if (presence) sampling->set_presence_penalty(static_cast<float>(*presence));
  if (top_k) {
    if (*top_k < 0 || *top_k > (1 << 30)) return Invalid("top_k", "top_k must be >= 0");
    sampling->set_top_k(static_cast<int32_t>(*top_k));
  }
  if (seed) sampling->set_seed(static_cast<uint64_t>(*seed));
  int64_t tokens = max_completion_tokens.value_or(max_tokens.value_or(default_max_tokens));
  if (tokens < 1) {
    return Invalid(max_completion_tokens ? "max_completion_tokens" : "max_tokens",
                   absl::StrCat(max_completion_tokens ? "max_completion_tokens" : "max_tokens",
                                " must be >= 1, got ", tokens));
  }
  sampling->set_max_tokens(static_cast<int32_t>(std::min<int64_t>(tokens, 1 << 30)));
  sampling->set_ignore_eos(ignore_eos);
  auto stop = body.find("stop");
  if (stop != body.end() && !stop->is_null()) {
    if (stop->is_string()) {
      sampling->add_stop(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json& s : *stop) {
        if (!s.is_string()) return Invalid("stop", "stop must be a string or strings");
        sampling->add_stop(s.get<std::string>());
      }
    } else {
      return Invalid("stop", "stop must be a string or an array of strings");
    }
  }
  return std::nullopt;
}

std::optional<HttpError> ReadCommon(const json& body, ParsedRequest* parsed) {
  auto model = body.find("model");
  if (model != body.end() && !model->is_null()) {
    if (!model->is_string()) return Invalid("model", "model must be a string");
    parsed->request.set_model(model->get<std::string>());
  }
  if (auto e = ReadBool(body, "stream", &parsed->stream)) return e;
  auto options = body.find("stream_options");
  if (options != body.end() && options->is_object()) {
    if (auto e = ReadBool(*options, "include_usage", &parsed->include_usage)) return e;
  }
  auto user = body.find("user");
  if (user != body.end() && user->is_string())
    parsed->request.set_request_id(user->get<std::string>());
  return std::nullopt;
}

std::variant<ParsedRequest, HttpError> ParseCompletion(const json& body) {
  ParsedRequest parsed;
  if (auto e = ReadCommon(body, &parsed)) return *e;
  if (auto e = ReadSampling(body, 16, parsed.request.mutable_sampling())) return *e;
  bool echo = false;
  if (auto e = ReadBool(body, "echo", &echo)) return *e;
  if (echo) return Invalid("echo", "echo is not supported");
  auto logprobs = body.find("logprobs");
  if (logprobs != body.end() && !logprobs->is_null() && *logprobs != false) {
    return Invalid("logprobs", "logprobs is not supported");
  }
  auto prompt = body.find("prompt");
  if (prompt == body.end()) return Invalid("prompt", "prompt is required");
  const json* p = &*prompt;
  // A batch of one prompt is accepted; more would need n choices per response.
  if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) p = &(*p)[0];
  if (p->is_string()) {
    parsed.request.set_text(p->get<std::string>());
  } else if (p->is_array() && std::all_of(p->begin(), p->end(),
                                          [](const json& t) { return t.is_number_integer(); })) {
    for (const json& t : *p) {
      int64_t id = t.get<int64_t>();
      if (id < INT32_MIN || id > INT32_MAX)
        return Invalid("prompt", "prompt token id out of range");
      parsed.request.mutable_tokens()->add_ids(static_cast<int32_t>(id));
    }
  } else if (p->is_array()) {
    return Invalid("prompt",
                   "prompt must be a string, one string, or token ids (batches of "
                   "several prompts are not supported)");
  } else {
    return Invalid("prompt", "prompt must be a string or an array of token ids");
  }
  return parsed;
}

std::variant<ParsedRequest, HttpError> ParseChat(const json& body, const Frontend& frontend) {
  ParsedRequest parsed;
  if (auto e = ReadCommon(body, &parsed)) return *e;
  if (auto e = ReadSampling(body, frontend.context_length(), parsed.request.mutable_sampling())) {
    return *e;
  }
  auto messages = body.find("messages");
  if (messages == body.end() || !messages->is_array() || messages->empty()) {
    return Invalid("messages", "messages must be a non-empty array");
  }
  std::vector<ChatMessage> chat;
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return Invalid("messages", absl::StrCat(where, ".role must be a string"));
    }
    ChatMessage message;
    message.role = m["role"].get<std::string>();
    const json& content = m.contains("content") ? m["content"] : json(nullptr);
    if (content.is_string()) {
      message.content = content.get<std::string>();
    } else if (content.is_array()) {
      for (const json& part : content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string()) {
          return Invalid("messages",
                         absl::StrCat(where, ".content parts must be {\"type\": \"text\"}"));
        }
        message.content += part["text"].get<std::string>();
      }
    } else if (!content.is_null()) {
      return Invalid("messages", absl::StrCat(where, ".content must be a string or text parts"));
    }
    chat.push_back(std::move(message));
  }
  absl::StatusOr<std::string> text = ApplyChatTemplate(frontend.tokenizer(), chat, true);
  if (!text.ok()) return HttpError{absl::InvalidArgumentError(text.status().message()), "messages"};
  parsed.request.set_text(*text);
  return parsed;
}

std::string OpenAiFinishReason(const std::string& reason) {
  return reason == "length" ? "length" : "stop";  // eos and stop strings are both "stop".
}

json UsageJson(const Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens}}}};
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

class CollectingSink final : public OutputSink {
 public:
  bool Send(const OutputEvent& event) override {
    text += event.text;
    if (!event.finish_reason.empty()) {
      finish_reason = event.finish_reason;
      usage = event.usage;
    }
    return true;
  }
  std::string text;
  std::string finish_reason;
  Usage usage;
};

// Writes each event as one server-sent event in OpenAI's chunk format.
class SseSink final : public OutputSink {
 public:
  SseSink(httplib::DataSink& sink, bool chat, std::string id, std::string model, int64_t created,
          bool include_usage)
      : sink_(sink),
        chat_(chat),
        id_(std::move(id)),
        model_(std::move(model)),
        created_(created),
        include_usage_(include_usage) {}

  bool Send(const OutputEvent& event) override {
    json choice = {{"index", 0}};
    choice["finish_reason"] =
        event.finish_reason.empty() ? json(nullptr) : json(OpenAiFinishReason(event.finish_reason));
    if (chat_) {
      json delta = {{"content", event.text}};
      if (!sent_role_) delta["role"] = "assistant";
      sent_role_ = true;
      choice["delta"] = delta;
    } else {
      choice["text"] = event.text;
      choice["logprobs"] = nullptr;
    }
    json chunk = Chunk();
    chunk["choices"] = json::array({choice});
    if (!Write(chunk)) return false;
    if (!event.finish_reason.empty() && include_usage_) {
      json usage = Chunk();
      usage["choices"] = json::array();
      usage["usage"] = UsageJson(event.usage);
      if (!Write(usage)) return false;
    }
    return true;
  }

  bool Write(const json& payload) {
    std::string line = absl::StrCat("data: ", Dump(payload), "\n\n");
    return sink_.is_writable() && sink_.write(line.data(), line.size());
  }
  void Done() {
    static constexpr absl::string_view kDone = "data: [DONE]\n\n";
    if (sink_.is_writable()) sink_.write(kDone.data(), kDone.size());
    sink_.done();
  }

 private:
  json Chunk() const {
    return {{"id", id_},
            {"object", chat_ ? "chat.completion.chunk" : "text_completion"},
            {"created", created_},
            {"model", model_}};
  }

  httplib::DataSink& sink_;
  const bool chat_;
  const std::string id_;
  const std::string model_;
  const int64_t created_;
  const bool include_usage_;
  bool sent_role_ = false;
};

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

OpenAiHttpServer::OpenAiHttpServer(Frontend& frontend, WorkerRegistry& registry, Metrics& metrics)
    : frontend_(frontend), registry_(registry), metrics_(metrics) {
  metrics_.Declare("tessera_requests_in_flight", Metrics::Type::kGauge,
                   "Requests the router is running now.");
  metrics_.Declare("tessera_workers", Metrics::Type::kGauge,
                   "Registered workers by role and state.");
  metrics_.Declare("tessera_worker_running_sequences", Metrics::Type::kGauge,
                   "Sequences in each worker's batch (last heartbeat).");
  metrics_.Declare("tessera_worker_queued_prefill_tokens", Metrics::Type::kGauge,
                   "Prompt tokens each worker has yet to compute (last heartbeat).");
  metrics_.Declare("tessera_worker_kv_blocks", Metrics::Type::kGauge,
                   "Each worker's KV blocks, free and total (last heartbeat).");
  metrics_.Declare("tessera_worker_in_flight", Metrics::Type::kGauge,
                   "Requests the router has on each worker now.");
  using T = Metrics::Type;
  metrics_.Declare("tessera_kv_lookups_total", T::kCounter,
                   "Full prompt blocks looked up in each worker's prefix cache.");
  metrics_.Declare("tessera_kv_hits_total", T::kCounter,
                   "Prefix-cache hits by worker and tier (device, host).");
  metrics_.Declare("tessera_kv_hit_rate", T::kGauge,
                   "Prefix-cache hits per lookup over all workers, by tier.");
  metrics_.Declare("tessera_kv_blocks_offloaded_total", T::kCounter,
                   "Cached device blocks moved to the host tier.");
  metrics_.Declare("tessera_kv_blocks_restored_total", T::kCounter,
                   "Host-tier blocks copied back to the device tier.");
  metrics_.Declare("tessera_kv_blocks_evicted_total", T::kCounter,
                   "Cached blocks evicted, by tier.");
  metrics_.Declare("tessera_kv_tier_bytes_moved_total", T::kCounter,
                   "KV bytes copied between tiers (and for copy on write).");
  metrics_.Declare("tessera_kv_handoff_bytes_total", T::kCounter,
                   "KV bytes each decode worker pulled from prefill workers.");
  metrics_.Declare("tessera_preemptions_total", T::kCounter,
                   "Sequences preempted for lack of KV blocks.");
  metrics_.Declare("tessera_kv_cached_blocks", T::kGauge,
                   "Unreferenced blocks holding reusable content, by worker and tier.");
  metrics_.Declare("tessera_kv_pool_lookups_total", T::kCounter,
                   "Blocks each worker asked the cache pool for.");
  metrics_.Declare("tessera_kv_pool_puts_total", T::kCounter,
                   "Blocks each worker stored in the cache pool.");
  metrics_.Declare("tessera_kv_pool_stored_bytes", T::kGauge, "Bytes each cache server holds.");
  metrics_.Declare("tessera_kv_pool_capacity_bytes", T::kGauge, "Each cache server's byte budget.");
  metrics_.Declare("tessera_expert_tokens_total", T::kCounter,
                   "Tokens each worker's sequences routed to each expert of each MoE layer.");
}

OpenAiHttpServer::~OpenAiHttpServer() { Stop(); }

void OpenAiHttpServer::RefreshGauges() {
  metrics_.Set("tessera_requests_in_flight", {}, frontend_.in_flight());
  for (const char* family : {"tessera_workers",
                             "tessera_worker_running_sequences",
                             "tessera_worker_queued_prefill_tokens",
                             "tessera_worker_kv_blocks",
                             "tessera_worker_in_flight",
                             "tessera_kv_lookups_total",
                             "tessera_kv_hits_total",
                             "tessera_kv_hit_rate",
                             "tessera_kv_blocks_offloaded_total",
                             "tessera_kv_blocks_restored_total",
                             "tessera_kv_blocks_evicted_total",
                             "tessera_kv_tier_bytes_moved_total",
                             "tessera_kv_handoff_bytes_total",
                             "tessera_preemptions_total",
                             "tessera_kv_cached_blocks",
                             "tessera_kv_pool_lookups_total",
                             "tessera_kv_pool_puts_total",
                             "tessera_kv_pool_stored_bytes",
                             "tessera_kv_pool_capacity_bytes",
                             "tessera_expert_tokens_total"}) {
    metrics_.Clear(family);
  }
  double lookups = 0, device_hits = 0, host_hits = 0, pool_lookups = 0, pool_hits = 0;
  std::map<std::pair<std::string, std::string>, int> counts;
  for (const tessera::v1::WorkerStatus& w : registry_.List()) {
    ++counts[{w.role(), w.state()}];
    Labels labels = {{"worker", w.worker_id()}, {"role", w.role()}};
    metrics_.Set("tessera_worker_running_sequences", labels, w.running_sequences());
    metrics_.Set("tessera_worker_queued_prefill_tokens", labels, w.queued_prefill_tokens());
    metrics_.Set("tessera_worker_in_flight", labels, w.in_flight());
    Labels free = labels, total = labels;
    free.emplace_back("state", "free");
    total.emplace_back("state", "total");
    metrics_.Set("tessera_worker_kv_blocks", free, w.free_kv_blocks());
    metrics_.Set("tessera_worker_kv_blocks", total, w.total_kv_blocks());
    auto with = [&](const char* key, const char* value) {
      Labels l = labels;
      l.emplace_back(key, value);
      return l;
    };
    metrics_.SetCounter("tessera_kv_lookups_total", labels, w.kv_lookups());
    metrics_.SetCounter("tessera_kv_hits_total", with("tier", "device"), w.kv_device_hits());
    metrics_.SetCounter("tessera_kv_hits_total", with("tier", "host"), w.kv_host_hits());
    metrics_.SetCounter("tessera_kv_hits_total", with("tier", "pool"), w.pool_hits());
    metrics_.SetCounter("tessera_kv_pool_lookups_total", labels, w.pool_lookups());
    metrics_.SetCounter("tessera_kv_pool_puts_total", labels, w.pool_puts());
    if (w.role() == "cache") {
      metrics_.Set("tessera_kv_pool_stored_bytes", {{"worker", w.worker_id()}},
                   w.pool_stored_bytes());
      metrics_.Set("tessera_kv_pool_capacity_bytes", {{"worker", w.worker_id()}},
                   w.pool_capacity_bytes());
    }
    pool_lookups += w.pool_lookups();
    pool_hits += w.pool_hits();
    metrics_.SetCounter("tessera_kv_blocks_offloaded_total", labels, w.kv_offloaded());
    metrics_.SetCounter("tessera_kv_blocks_restored_total", labels, w.kv_restored());
    metrics_.SetCounter("tessera_kv_blocks_evicted_total", with("tier", "device"),
                        w.kv_evicted_device());
    metrics_.SetCounter("tessera_kv_blocks_evicted_total", with("tier", "host"),
                        w.kv_evicted_host());
    metrics_.SetCounter("tessera_kv_tier_bytes_moved_total", labels, w.kv_tier_bytes_moved());
    metrics_.SetCounter("tessera_kv_handoff_bytes_total", labels, w.kv_bytes_pulled());
    metrics_.SetCounter("tessera_preemptions_total", labels, w.preemptions());
    metrics_.Set("tessera_kv_cached_blocks", with("tier", "device"), w.cached_device_blocks());
    metrics_.Set("tessera_kv_cached_blocks", with("tier", "host"), w.cached_host_blocks());
    const int experts = w.num_experts();
    if (experts > 0 && w.expert_tokens_size() == w.expert_layers_size() * experts) {
      for (int i = 0; i < w.expert_layers_size(); ++i) {
        for (int e = 0; e < experts; ++e) {
          Labels series = {{"worker", w.worker_id()},
                           {"layer", std::to_string(w.expert_layers(i))},
                           {"expert", std::to_string(e)}};
          metrics_.SetCounter("tessera_expert_tokens_total", series,
                              static_cast<double>(w.expert_tokens(i * experts + e)));
        }
      }
    }
    lookups += w.kv_lookups();
    device_hits += w.kv_device_hits();
    host_hits += w.kv_host_hits();
  }
  metrics_.Set("tessera_kv_hit_rate", {{"tier", "device"}},
               lookups > 0 ? device_hits / lookups : 0);
  metrics_.Set("tessera_kv_hit_rate", {{"tier", "host"}}, lookups > 0 ? host_hits / lookups : 0);
  // The pool is asked only for what a worker lacks, so its rate is per pool lookup.
  metrics_.Set("tessera_kv_hit_rate", {{"tier", "pool"}},
               pool_lookups > 0 ? pool_hits / pool_lookups : 0);
  for (const auto& [key, count] : counts) {
    metrics_.Set("tessera_workers", {{"role", key.first}, {"state", key.second}}, count);
  }
}

absl::Status OpenAiHttpServer::Start(const std::string& address) {
  server_ = std::make_unique<httplib::Server>();
  // One thread per open connection: streams are long-lived, and the default pool of 8 would
  // queue the rest behind them.
  server_->new_task_queue = [] { return new httplib::ThreadPool(512); };
  server_->set_payload_max_length(static_cast<size_t>(frontend_.options().max_request_bytes));

  server_->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const bool can_serve =
        (registry_.Has(WorkerNeed::kPrefill) && registry_.Has(WorkerNeed::kDecode)) ||
        registry_.Has(WorkerNeed::kColocated);
    res.status = can_serve ? 200 : 503;
    res.set_content(
        Dump({{"status", can_serve ? "ok" : "no workers"}, {"workers", registry_.List().size()}}),
        "application/json");
  });
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    RefreshGauges();
    res.set_content(metrics_.Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json model = {{"id", frontend_.model_id()},
                  {"object", "model"},
                  {"created", 0},
                  {"owned_by", "tessera"},
                  {"max_model_len", frontend_.context_length()}};
    res.set_content(Dump({{"object", "list"}, {"data", json::array({model})}}), "application/json");
  });
  server_->Get("/admin/workers", [this](const httplib::Request&, httplib::Response& res) {
    json workers = json::array();
    for (const tessera::v1::WorkerStatus& w : registry_.List()) {
      workers.push_back({{"worker_id", w.worker_id()},
                         {"role", w.role()},
                         {"address", w.address()},
                         {"state", w.state()},
                         {"running_sequences", w.running_sequences()},
                         {"queued_prefill_tokens", w.queued_prefill_tokens()},
                         {"free_kv_blocks", w.free_kv_blocks()},
                         {"total_kv_blocks", w.total_kv_blocks()},
                         {"in_flight", w.in_flight()},
                         {"pid", w.pid()}});
    }
    res.set_content(Dump(workers), "application/json");
  });

  auto generate = [this](bool chat) {
    return [this, chat](const httplib::Request& req, httplib::Response& res) {
      json body;
      try {
        body = json::parse(req.body);
      } catch (const json::parse_error& e) {
        frontend_.CountRejected("http", absl::InvalidArgumentError(""));
        return SendError(res, Invalid("", absl::StrCat("the body is not valid JSON at byte ",
                                                       e.byte, ": ", e.what())));
      }
      if (!body.is_object()) {
        return SendError(res, Invalid("", "the body must be a JSON object"));
      }
      std::variant<ParsedRequest, HttpError> parsed =
          chat ? ParseChat(body, frontend_) : ParseCompletion(body);
      if (auto* error = std::get_if<HttpError>(&parsed)) {
        frontend_.CountRejected("http", error->status);
        return SendError(res, *error);
      }
      auto request = std::make_shared<ParsedRequest>(std::get<ParsedRequest>(std::move(parsed)));
      absl::StatusOr<DispatchJob> job = frontend_.Prepare(request->request);
      if (!job.ok()) {
        frontend_.CountRejected("http", job.status());
        return SendError(res, {job.status(), ParamOf(job.status())});
      }
      const std::string id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", job->request_id);
      const int64_t created = UnixNow();
      const std::string model = frontend_.model_id();
      if (!request->stream) {
        CollectingSink sink;
        absl::Status status = frontend_.Run(*job, sink, "http");
        if (!status.ok()) return SendError(res, {status, ParamOf(status)});
        json choice = {{"index", 0}, {"finish_reason", OpenAiFinishReason(sink.finish_reason)}};
        if (chat) {
          choice["message"] = {{"role", "assistant"}, {"content", sink.text}};
        } else {
          choice["text"] = sink.text;
          choice["logprobs"] = nullptr;
        }
        json out = {{"id", id},
                    {"object", chat ? "chat.completion" : "text_completion"},
                    {"created", created},
                    {"model", model},
                    {"choices", json::array({choice})},
                    {"usage", UsageJson(sink.usage)}};
        res.set_content(Dump(out), "application/json");
        return;
      }
      // Streaming: refuse now, with the right status, what would certainly fail; later
      // failures arrive as an error event in the stream.
      if (frontend_.in_flight() >= frontend_.options().max_in_flight) {
        absl::Status status = absl::ResourceExhaustedError(
            absl::StrCat("the router has ", frontend_.options().max_in_flight,
                         " requests in flight, its limit; retry later"));
        frontend_.CountRejected("http", status);
        return SendError(res, {status, ""});
      }
      if (!(registry_.Has(WorkerNeed::kPrefill) && registry_.Has(WorkerNeed::kDecode)) &&
          !registry_.Has(WorkerNeed::kColocated)) {
        absl::Status status = absl::UnavailableError("no worker can serve");
        frontend_.CountRejected("http", status);
        return SendError(res, {status, ""});
      }
      auto shared_job = std::make_shared<DispatchJob>(*std::move(job));
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream",
          [this, chat, request, shared_job, id, created, model](size_t, httplib::DataSink& sink) {
            SseSink sse(sink, chat, id, model, created, request->include_usage);
            absl::Status status = frontend_.Run(*shared_job, sse, "http");
            if (!status.ok() && status.code() != absl::StatusCode::kCancelled) {
              sse.Write(ErrorBody({status, ParamOf(status)}));
            }
            sse.Done();
            return true;
          });
    };
  };
  server_->Post("/v1/completions", generate(false));
  server_->Post("/v1/chat/completions", generate(true));
  server_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404) {
      SendError(res,
                {absl::NotFoundError(absl::StrCat("no route ", req.method, " ", req.path)), ""});
    } else if (res.status == 413) {
      res.set_content(
          Dump(ErrorBody({absl::InvalidArgumentError("the request body is too large"), ""})),
          "application/json");
    }
  });

  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("HTTP address '", address, "' has no port"));
  }
  const std::string host = address.substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(address.substr(colon + 1));
  } catch (...) {
    return absl::InvalidArgumentError(absl::StrCat("HTTP address '", address, "' has a bad port"));
  }
  if (!server_->bind_to_port(host, port)) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return absl::OkStatus();
}

void OpenAiHttpServer::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace tessera::engine::server
