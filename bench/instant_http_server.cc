#include "bench/instant_http_server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>
#include <string_view>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tessera::bench {
namespace {

constexpr int32_t kDefaultMaxTokens = 16;
constexpr int64_t kMaxMaxTokens = 1 << 20;

// The event for one token of a streamed completion, with a blank line after it.
std::string TokenEvent(bool last) {
  nlohmann::json choice = {{"index", 0}, {"text", " x"}, {"logprobs", nullptr}};
  choice["finish_reason"] = last ? nlohmann::json("length") : nlohmann::json(nullptr);
  nlohmann::json event = {{"id", "cmpl-instant"},
                          {"object", "text_completion"},
                          {"model", "instant"},
                          {"choices", nlohmann::json::array({choice})}};
  return absl::StrCat("data: ", event.dump(), "\n\n");
}

nlohmann::json Usage(int64_t prompt_chars, int64_t tokens) {
  return {{"prompt_tokens", prompt_chars}, {"completion_tokens", tokens},
          {"total_tokens", prompt_chars + tokens}};
}

void Reply(evhttp_request* request, int code, const char* reason, const std::string& body) {
  evhttp_add_header(evhttp_request_get_output_headers(request), "Content-Type",
                    "application/json");
  evbuffer* buffer = evbuffer_new();
  evbuffer_add(buffer, body.data(), body.size());
  evhttp_send_reply(request, code, reason, buffer);
  evbuffer_free(buffer);
}

void ReplyError(evhttp_request* request, int code, const char* reason,
                const std::string& message) {
  nlohmann::json body = {{"error",
                          {{"message", message},
                           {"type", "invalid_request_error"},
                           {"param", nullptr},
                           {"code", nullptr}}}};
  Reply(request, code, reason, body.dump());
}

}  // namespace

// Owns the libevent objects and runs the loop; every callback runs on the loop's thread.
class InstantHttpServer::Loop {
 public:
  Loop(InstantHttpServer& server, std::chrono::milliseconds hold) : server_(server), hold_(hold) {}

  ~Loop() {
    if (thread_.joinable()) {
      event_base_loopbreak(base_);
      thread_.join();
    }
    // Freeing the server closes its connections, which runs their close callbacks.
    if (http_ != nullptr) evhttp_free(http_);
    for (Stream* stream : streams_) {
      event_free(stream->timer);
      delete stream;
    }
    if (base_ != nullptr) event_base_free(base_);
  }

  absl::StatusOr<int> Listen(const std::string& address) {
    const size_t colon = address.rfind(':');
    sockaddr_in where{};
    where.sin_family = AF_INET;
    int port = 0;
    if (colon == std::string::npos ||
        inet_pton(AF_INET, address.substr(0, colon).c_str(), &where.sin_addr) != 1 ||
        !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("listen address \"", address, "\": expected IPV4_HOST:PORT"));
    }
    where.sin_port = htons(static_cast<uint16_t>(port));
    base_ = event_base_new();
    http_ = base_ == nullptr ? nullptr : evhttp_new(base_);
    if (http_ == nullptr) return absl::InternalError("cannot create the libevent HTTP server");
    evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(http_, &Loop::OnRequest, this);
    // The system's largest accept backlog: bursts of thousands of new connections must not
    // meet SYN drops (a dropped SYN costs the client a one-second retransmit).
    evconnlistener* listener =
        evconnlistener_new_bind(base_, nullptr, nullptr, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE,
                                -1, reinterpret_cast<sockaddr*>(&where), sizeof(where));
    if (listener == nullptr) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
    }
    if (evhttp_bind_listener(http_, listener) == nullptr) {
      evconnlistener_free(listener);
      return absl::InternalError(absl::StrCat("cannot serve HTTP on ", address));
    }
    sockaddr_in bound{};
    socklen_t length = sizeof(bound);
    getsockname(evconnlistener_get_fd(listener), reinterpret_cast<sockaddr*>(&bound), &length);
    thread_ = std::thread([this] { event_base_dispatch(base_); });
    return ntohs(bound.sin_port);
  }

 private:
  // A streamed completion waiting on its hold timer.
  struct Stream {
    Loop* loop = nullptr;
    evhttp_request* request = nullptr;
    event* timer = nullptr;
    int64_t tokens = 0;
    int64_t prompt_chars = 0;
  };

  static void OnRequest(evhttp_request* request, void* self) {
    static_cast<Loop*>(self)->Handle(request);
  }

  void Handle(evhttp_request* request) {
    const std::string_view uri = evhttp_request_get_uri(request);
    const std::string_view path = uri.substr(0, uri.find('?'));
    const evhttp_cmd_type method = evhttp_request_get_command(request);
    if (method == EVHTTP_REQ_GET && path == "/v1/models") {
      Reply(request, 200, "OK",
            R"({"object":"list","data":[{"id":"instant","object":"model","owned_by":"tessera"}]})");
      return;
    }
    if (method != EVHTTP_REQ_POST || path != "/v1/completions") {
      ReplyError(request, 404, "Not Found", absl::StrCat("no route for ", std::string(uri)));
      return;
    }
    evbuffer* input = evhttp_request_get_input_buffer(request);
    const size_t size = evbuffer_get_length(input);
    const char* data = reinterpret_cast<const char*>(evbuffer_pullup(input, -1));
    const nlohmann::json body =
        nlohmann::json::parse(std::string_view(data == nullptr ? "" : data, size), nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      ReplyError(request, 400, "Bad Request", "the request body is not a JSON object");
      return;
    }
    int64_t tokens = kDefaultMaxTokens;
    if (body.contains("max_tokens")) {
      if (!body["max_tokens"].is_number_integer() || body["max_tokens"].get<int64_t>() < 1 ||
          body["max_tokens"].get<int64_t>() > kMaxMaxTokens) {
        ReplyError(request, 400, "Bad Request",
                   absl::StrCat("max_tokens must be an integer in [1, ", kMaxMaxTokens, "]"));
        return;
      }
      tokens = body["max_tokens"].get<int64_t>();
    }
    const int64_t prompt_chars =
        body.contains("prompt") && body["prompt"].is_string()
            ? static_cast<int64_t>(body["prompt"].get_ref<const std::string&>().size())
            : 0;
    server_.requests_.fetch_add(1);
    const bool streamed = body.contains("stream") && body["stream"].is_boolean() &&
                          body["stream"].get<bool>();
    if (!streamed) {
      std::string text;
      for (int64_t i = 0; i < tokens; ++i) text += " x";
      nlohmann::json reply = {
          {"id", "cmpl-instant"},
          {"object", "text_completion"},
          {"model", "instant"},
          {"choices", {{{"index", 0}, {"text", text}, {"finish_reason", "length"}}}},
          {"usage", Usage(prompt_chars, tokens)}};
      Reply(request, 200, "OK", reply.dump());
      return;
    }
    const int64_t open = server_.open_.fetch_add(1) + 1;
    int64_t most = server_.most_open_.load();
    while (open > most && !server_.most_open_.compare_exchange_weak(most, open)) {
    }
    evhttp_add_header(evhttp_request_get_output_headers(request), "Content-Type",
                      "text/event-stream");
    evhttp_send_reply_start(request, 200, "OK");
    evbuffer* chunk = evbuffer_new();
    const std::string event = TokenEvent(false);
    for (int64_t i = 0; i + 1 < tokens; ++i) evbuffer_add(chunk, event.data(), event.size());
    evhttp_send_reply_chunk(request, chunk);
    evbuffer_free(chunk);
    if (hold_.count() == 0) {
      FinishStream(request, tokens, prompt_chars);
      return;
    }
    // Hold the stream on a timer of the loop, not a thread.
    auto* stream = new Stream{this, request, nullptr, tokens, prompt_chars};
    stream->timer = evtimer_new(base_, &Loop::OnHoldOver, stream);
    const timeval delay{static_cast<time_t>(hold_.count() / 1000),
                        static_cast<suseconds_t>(hold_.count() % 1000 * 1000)};
    evtimer_add(stream->timer, &delay);
    evhttp_connection_set_closecb(evhttp_request_get_connection(request), &Loop::OnClientGone,
                                  stream);
    streams_.insert(stream);
  }

  // The last token, the usage, [DONE], and the end of the chunked reply.
  void FinishStream(evhttp_request* request, int64_t tokens, int64_t prompt_chars) {
    evbuffer* chunk = evbuffer_new();
    const std::string last = TokenEvent(true);
    const nlohmann::json usage = {{"id", "cmpl-instant"},
                                  {"object", "text_completion"},
                                  {"model", "instant"},
                                  {"choices", nlohmann::json::array()},
                                  {"usage", Usage(prompt_chars, tokens)}};
    const std::string tail = absl::StrCat(last, "data: ", usage.dump(), "\n\ndata: [DONE]\n\n");
    evbuffer_add(chunk, tail.data(), tail.size());
    evhttp_send_reply_chunk(request, chunk);
    evbuffer_free(chunk);
    evhttp_send_reply_end(request);
    server_.open_.fetch_sub(1);
  }

  static void OnHoldOver(evutil_socket_t, short, void* arg) {
    auto* stream = static_cast<Stream*>(arg);
    Loop& loop = *stream->loop;
    evhttp_connection_set_closecb(evhttp_request_get_connection(stream->request), nullptr,
                                  nullptr);
    loop.FinishStream(stream->request, stream->tokens, stream->prompt_chars);
    loop.Drop(stream);
  }

  // The client closed the connection while its stream was held: libevent frees the request.
  static void OnClientGone(evhttp_connection*, void* arg) {
    auto* stream = static_cast<Stream*>(arg);
    stream->loop->server_.open_.fetch_sub(1);
    stream->loop->Drop(stream);
  }

  void Drop(Stream* stream) {
    event_free(stream->timer);
    streams_.erase(stream);
    delete stream;
  }

  InstantHttpServer& server_;
  const std::chrono::milliseconds hold_;
  event_base* base_ = nullptr;
  evhttp* http_ = nullptr;
  absl::flat_hash_set<Stream*> streams_;
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<InstantHttpServer>> InstantHttpServer::Start(
    const std::string& address, std::chrono::milliseconds hold) {
  // Lets another thread stop the loop (event_base_loopbreak) safely.
  static const bool threads_enabled = evthread_use_pthreads() == 0;
  if (!threads_enabled) return absl::InternalError("libevent has no pthreads support");
  auto server = std::unique_ptr<InstantHttpServer>(new InstantHttpServer());
  server->loop_ = std::make_unique<Loop>(*server, hold);
  absl::StatusOr<int> port = server->loop_->Listen(address);
  if (!port.ok()) return port.status();
  server->port_ = *port;
  return server;
}

InstantHttpServer::~InstantHttpServer() {
  // Stop the loop while the counters its close callbacks touch still exist.
  loop_.reset();
}

}  // namespace tessera::bench
