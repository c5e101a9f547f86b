#include "bench/instant_server.h"

#include <grpcpp/alarm.h>

#include "absl/strings/str_cat.h"
#include "tessera/v1/inference.grpc.pb.h"

namespace tessera::bench {

class InstantServer::Service final : public tessera::v1::Inference::CallbackService {
 public:
  Service(InstantServer& server, std::chrono::milliseconds hold) : server_(server), hold_(hold) {}

  grpc::ServerWriteReactor<tessera::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const tessera::v1::GenerateRequest* request) override {
    return new Stream(server_, *request, hold_);
  }

 private:
  // Writes the tokens one message at a time, then finishes.
  class Stream final : public grpc::ServerWriteReactor<tessera::v1::GenerateResponse> {
   public:
    Stream(InstantServer& server, const tessera::v1::GenerateRequest& request,
           std::chrono::milliseconds hold)
        : server_(server),
          tokens_(request.sampling().has_max_tokens() ? request.sampling().max_tokens() : 16),
          hold_(hold) {
      server_.requests_.fetch_add(1);
      const int64_t open = server_.open_.fetch_add(1) + 1;
      int64_t most = server_.most_open_.load();
      while (open > most && !server_.most_open_.compare_exchange_weak(most, open)) {
      }
      Next();
    }
    void OnWriteDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
        return;
      }
      Next();
    }
    void OnDone() override {
      server_.open_.fetch_sub(1);
      delete this;
    }

   private:
    void Next() {
      if (written_ == tokens_) {
        Finish(grpc::Status::OK);
        return;
      }
      if (written_ == tokens_ - 1 && hold_.count() > 0 && !held_) {
        // Hold the stream open on a gRPC alarm, not a thread: 10,000 open streams must not
        // need 10,000 threads.
        held_ = true;
        alarm_.Set(std::chrono::system_clock::now() + hold_, [this](bool) { Next(); });
        return;
      }
      response_.Clear();
      response_.add_token_ids(written_);
      response_.set_text(" x");
      if (++written_ == tokens_) {
        response_.set_finish_reason("length");
        StartWriteLast(&response_, grpc::WriteOptions());
        return;
      }
      StartWrite(&response_);
    }

    InstantServer& server_;
    const int32_t tokens_;
    const std::chrono::milliseconds hold_;
    int32_t written_ = 0;
    bool held_ = false;
    grpc::Alarm alarm_;
    tessera::v1::GenerateResponse response_;
  };

  InstantServer& server_;
  const std::chrono::milliseconds hold_;
};

absl::StatusOr<std::unique_ptr<InstantServer>> InstantServer::Start(
    const std::string& address, std::chrono::milliseconds hold) {
  auto server = std::unique_ptr<InstantServer>(new InstantServer());
  server->service_ = std::make_unique<Service>(*server, hold);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  return server;
}

InstantServer::~InstantServer() {
  if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
}

}  // namespace tessera::bench
