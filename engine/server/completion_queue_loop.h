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

namespace tessera::engine::server {

class CompletionTag {
 public:
  virtual void Complete(bool ok) = 0;

 protected:
  ~CompletionTag() = default;
};

// A tag that calls a member function of its owner.
template <typename Owner>
class MemberTag final : public CompletionTag {
 public:
  MemberTag(Owner* owner, void (Owner::*method)(bool)) : owner_(owner), method_(method) {}
  void Complete(bool ok) override { (owner_->*method_)(ok); }

 private:
  Owner* owner_;
  void (Owner::*method_)(bool);
};

class CompletionQueueLoop {
 public:
  // Adds `threads` (at least 1) queues to the server being built; server and client
  // operations may both use them.
  CompletionQueueLoop(grpc::ServerBuilder& builder, int threads);
  ~CompletionQueueLoop() { Shutdown(); }

  // Starts a thread per queue; call after the server is built.
  void Start();
  // Shuts down and drains every queue, then joins the threads. Call after the server's
  // Shutdown(), once nothing starts new operations.
  void Shutdown();
  int size() const { return static_cast<int>(queues_.size()); }
  grpc::ServerCompletionQueue* queue(int i) const { return queues_[i].get(); }

  // The queue for a new client call: the calling thread's own when it is one of the loop's
  // (so the call's completions stay on this thread), else the next in turn.
  grpc::CompletionQueue* ForNewCall();

 private:
  void Drain(grpc::ServerCompletionQueue* queue);

  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> threads_;
  bool shut_down_ = false;
  std::atomic<uint32_t> next_{0};
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_COMPLETION_QUEUE_LOOP_H_
