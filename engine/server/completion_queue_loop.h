// The router's request path on gRPC's asynchronous API: each completion queue is drained by
// exactly one thread, which runs every completion (a client's request arriving, a worker's
// event, a write finishing) itself. With one thread per queue, gRPC never wakes a second
// thread to take over polling or to run a callback, nor kicks a poller with an eventfd write:
// on a small host those hand-offs, not the router's own work, were most of the latency it
// added to a request.
//
// Every operation started on a queue names a CompletionTag; the loop calls its Complete(ok).
// Thread-safety: thread-safe. Tags complete on their queue's thread.
#ifndef TESSERA_ENGINE_SERVER_COMPLETION_QUEUE_LOOP_H_
#define TESSERA_ENGINE_SERVER_COMPLETION_QUEUE_LOOP_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/time.h"

namespace tessera::engine::server {

// What an operation's completion runs: a member function of the tag's owner. Operations are
// given the tag's own address, which the loop casts back to exactly this type.
class CompletionTag {
 public:
  // A tag that calls `owner->*Method(ok)`.
  template <auto Method, typename Owner>
  static CompletionTag To(Owner* owner) {
    return CompletionTag(owner,
                         [](void* self, bool ok) { (static_cast<Owner*>(self)->*Method)(ok); });
  }
  void Complete(bool ok) { run_(owner_, ok); }

 private:
  CompletionTag(void* owner, void (*run)(void*, bool)) : owner_(owner), run_(run) {}

  void* owner_;
  void (*run_)(void*, bool);
};

class CompletionQueueLoop {
 public:
  // Adds `threads` (at least 1) queues to the server being built; server and client
  // operations may both use them.
  CompletionQueueLoop(grpc::ServerBuilder& builder, int threads);
  ~CompletionQueueLoop() { Shutdown(); }

  // Starts a thread per queue; call after the server is built.
  void Start();
  // Waits (up to `timeout`) until no LiveCall is left, then shuts down and drains every
  // queue and joins the threads. Call after the server's Shutdown(), which ends every call
  // and stops new ones: an operation started on a queue after it shut down would abort the
  // process, and completions still running may start operations.
  void Shutdown(absl::Duration timeout = absl::Seconds(10));

  // Held by every object that starts operations on the loop's queues (a served call, a
  // dispatcher task with its calls to workers), from its creation until it is gone.
  class LiveCall {
   public:
    explicit LiveCall(CompletionQueueLoop& loop) : loop_(loop) { loop_.live_.fetch_add(1); }
    ~LiveCall() { loop_.live_.fetch_sub(1); }
    LiveCall(const LiveCall&) = delete;
    LiveCall& operator=(const LiveCall&) = delete;

   private:
    CompletionQueueLoop& loop_;
  };
  int live_calls() const { return live_.load(); }
  int size() const { return static_cast<int>(queues_.size()); }
  grpc::ServerCompletionQueue* queue(int i) const { return queues_[i].get(); }

  // The queue for a new client call: the calling thread's own when it is one of the loop's
  // (so the call's completions stay on this thread), else the next in turn.
  grpc::CompletionQueue* ForNewCall();
  // The calling thread's queue if it is one of the loop's threads, else null.
  grpc::CompletionQueue* CurrentQueue() const;

 private:
  void Drain(grpc::ServerCompletionQueue* queue);

  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> threads_;
  bool shut_down_ = false;
  std::atomic<uint32_t> next_{0};
  std::atomic<int> live_{0};
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_COMPLETION_QUEUE_LOOP_H_
