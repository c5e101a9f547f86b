#include "bench/http_sender.h"

#include <curl/curl.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace tessera::bench {
namespace {

// One request in flight: its body, response buffer and record.
struct Transfer {
  std::string body;
  std::string pending;  // Bytes of the response not yet split into lines.
  std::string error_body;
  RequestRecord* record = nullptr;
  int64_t usage_tokens = -1;
  curl_slist* headers = nullptr;
  std::chrono::steady_clock::time_point base;

  double Now() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - base).count();
  }

  // One server-sent event line.
  void Line(absl::string_view line) {
    if (!absl::ConsumePrefix(&line, "data:")) return;
    line = absl::StripLeadingAsciiWhitespace(line);
    if (line == "[DONE]") return;
    const nlohmann::json event = nlohmann::json::parse(line, nullptr, false);
    if (event.is_discarded()) return;
    if (event.contains("choices") && event["choices"].is_array() && !event["choices"].empty()) {
      const nlohmann::json& choice = event["choices"][0];
      std::string text;
      if (choice.contains("text") && choice["text"].is_string()) {
        text = choice["text"].get<std::string>();
      } else if (choice.contains("delta") && choice["delta"].contains("content") &&
                 choice["delta"]["content"].is_string()) {
        text = choice["delta"]["content"].get<std::string>();
      }
      if (!text.empty()) record->token_times_s.push_back(Now());
    }
    if (event.contains("usage") && event["usage"].is_object() &&
        event["usage"].contains("completion_tokens") &&
        event["usage"]["completion_tokens"].is_number_integer()) {
      usage_tokens = event["usage"]["completion_tokens"].get<int64_t>();
    }
  }

  static size_t Write(char* data, size_t size, size_t count, void* self) {
    auto* t = static_cast<Transfer*>(self);
    t->pending.append(data, size * count);
    size_t start = 0;
    for (size_t end; (end = t->pending.find('\n', start)) != std::string::npos; start = end + 1) {
      absl::string_view line(t->pending.data() + start, end - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      t->Line(line);
    }
    t->pending.erase(0, start);
    if (t->error_body.size() < 4096)
      t->error_body.append(data, std::min<size_t>(size * count, 4096));
    return size * count;
  }
};

}  // namespace

class HttpSender::Impl {
 public:
  static void GlobalInit() {
    static const bool done = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
    (void)done;
  }

  Impl(std::string url, std::string model, double timeout_s, Clock::time_point base,
       std::function<void(bool)> on_done)
      : url_(std::move(url)),
        model_(std::move(model)),
        timeout_ms_(static_cast<long>(timeout_s * 1000)),
        base_(base),
        on_done_(std::move(on_done)),
        multi_((GlobalInit(), curl_multi_init())) {
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    thread_ = std::thread([this] { Loop(); });
  }

  ~Impl() {
    stop_ = true;
    curl_multi_wakeup(multi_);
    thread_.join();
    curl_multi_cleanup(multi_);
  }

  void Send(std::string prompt, RequestRecord& record) {
    auto t = std::make_unique<Transfer>();
    t->record = &record;
    t->base = base_;
    nlohmann::json body = {{"prompt", std::move(prompt)},
                           {"max_tokens", record.max_tokens},
                           {"stream", true},
                           {"temperature", 0},
                           {"ignore_eos", true},
                           {"stream_options", {{"include_usage", true}}}};
    if (!model_.empty()) body["model"] = model_;
    t->body = body.dump();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queued_.push_back(std::move(t));
    }
    curl_multi_wakeup(multi_);
  }

 private:
  void Start(std::unique_ptr<Transfer> t) {
    CURL* easy = curl_easy_init();
    t->headers = curl_slist_append(nullptr, "Content-Type: application/json");
    curl_easy_setopt(easy, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, t->body.c_str());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(t->body.size()));
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Transfer::Write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms_);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t.get());
    curl_multi_add_handle(multi_, easy);
    t.release();  // Owned through CURLOPT_PRIVATE until the transfer ends.
  }

  void Finish(CURL* easy, CURLcode result) {
    Transfer* raw = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &raw);
    std::unique_ptr<Transfer> t(raw);
    if (!t->pending.empty()) t->Line(t->pending);
    RequestRecord& r = *t->record;
    r.end_s = t->Now();
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    if (result != CURLE_OK) {
      r.status = result == CURLE_OPERATION_TIMEDOUT ? "DEADLINE_EXCEEDED" : "UNAVAILABLE";
      r.error = curl_easy_strerror(result);
    } else if (code < 200 || code >= 300) {
      r.status = absl::StrCat("HTTP ", code);
      const nlohmann::json body = nlohmann::json::parse(t->error_body, nullptr, false);
      r.error = !body.is_discarded() && body.contains("error") ? body["error"].dump()
                                                               : t->error_body.substr(0, 300);
      r.token_times_s.clear();
    } else if (t->usage_tokens > r.output_tokens()) {
      const double last = r.token_times_s.empty() ? r.end_s : r.token_times_s.back();
      r.token_times_s.resize(static_cast<size_t>(t->usage_tokens), last);
    }
    curl_multi_remove_handle(multi_, easy);
    curl_slist_free_all(t->headers);
    curl_easy_cleanup(easy);
    on_done_(!r.ok());
  }

  void Loop() {
    while (!stop_) {
      std::deque<std::unique_ptr<Transfer>> starting;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        starting.swap(queued_);
      }
      for (auto& t : starting) Start(std::move(t));
      int running = 0;
      curl_multi_perform(multi_, &running);
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
        if (msg->msg == CURLMSG_DONE) Finish(msg->easy_handle, msg->data.result);
      }
      curl_multi_poll(multi_, nullptr, 0, 100, nullptr);
    }
  }

  const std::string url_;
  const std::string model_;
  const long timeout_ms_;
  const Clock::time_point base_;
  const std::function<void(bool)> on_done_;
  CURLM* const multi_;
  std::mutex mutex_;
  std::deque<std::unique_ptr<Transfer>> queued_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

HttpSender::HttpSender(std::string base_url, std::string model, double timeout_s,
                       Clock::time_point base, std::function<void(bool)> on_done)
    : impl_(std::make_unique<Impl>(base_url + "/v1/completions", std::move(model), timeout_s, base,
                                   std::move(on_done))) {}

HttpSender::~HttpSender() = default;

void HttpSender::Send(std::string prompt, RequestRecord& record) {
  impl_->Send(std::move(prompt), record);
}

}  // namespace tessera::bench
