// Prefill streams the router opens to each prefill worker ahead of requests. Opening a gRPC
// stream (creating the call, encoding and writing its headers) is most of what the router
// adds to a request before its prefill starts: about twice a write on a stream already open.
// A request takes the stream waiting for its worker, writes its prompt on it, and once its
// own calls are on their way opens the next request's stream.
//
// A waiting stream holds no router thread and no worker compute: the worker's handler only
// waits for the first message. Streams are kept per worker registration, so a worker started
// anew at the same address never gets its predecessor's. One whose headers failed is never
// used, and one waiting longer than `max_idle` is replaced rather than used: its deadline, set
// when it was opened to the handoff lease plus `max_idle`, so leaves a request at least the
// whole lease (and a prefill holds KV at most `max_idle` past it). Nothing watches a waiting
// stream, though: one whose connection broke while it waited fails the request that takes it,
// which the dispatcher retries with a new call, without blaming the worker, after Forget()ing
// the worker's other waiting streams. A worker that leaves cancels the streams waiting on it.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_STANDBY_PREFILL_STREAMS_H_
#define TESSERA_ENGINE_SERVER_STANDBY_PREFILL_STREAMS_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/server/channel_pool.h"
#include "engine/server/completion_queue_loop.h"
#include "engine/server/parent_call.h"
#include "engine/server/worker_calls.h"

namespace tessera::engine::server {

class StandbyPrefillStreams {
 public:
  // `lease`: the longest a prefill call may last once its request is on it.
  StandbyPrefillStreams(ChannelPool& channels, CompletionQueueLoop& queues, absl::Duration lease,
                        absl::Duration max_idle = absl::Seconds(10));
  ~StandbyPrefillStreams() { Close(); }

  // A prefill call to worker `worker_id` at `address` carrying `first`, tied to `parent`: a
  // fresh stream waiting for that worker (on the calling thread's queue, when it is one of the
  // loop's) if `take_waiting`, else a new call with the context `new_context()` makes.
  // `*standby` says which.
  std::unique_ptr<PrefillCall> Open(
      const std::string& worker_id, const std::string& address, ParentCall* parent,
      tessera::internal::v1::PrefillClientMessage first,
      const std::function<std::unique_ptr<grpc::ClientContext>()>& new_context, bool take_waiting,
      bool* standby);

  // Opens a stream to worker `worker_id` at `address`, on the calling thread's queue (or the
  // loop's next), for the next request, unless one is waiting there. Also drops streams that
  // have waited longer than `max_idle` (workers no request has used lately).
  void Replenish(const std::string& worker_id, const std::string& address);

  // Cancels the streams waiting for worker `worker_id`.
  void Forget(const std::string& worker_id);

  // Cancels every waiting stream; after this Open() always makes a new call and Replenish()
  // does nothing. gRPC finishes the cancelled calls on the queues, which stay up until it has.
  void Close();

  // Streams waiting now (for tests and metrics).
  int waiting() const;

 private:
  // Worker id, address, queue.
  using Key = std::tuple<std::string, std::string, grpc::CompletionQueue*>;
  struct Waiting {
    std::unique_ptr<PrefillCall> call;
    std::chrono::steady_clock::time_point opened;
  };
  // Cancels `call` and lets gRPC finish it in the background.
  static void Discard(std::unique_ptr<PrefillCall> call);
  // Removes the waiting streams `drop(key, waiting)` picks and discards them (outside the
  // lock, which Discard must not run under).
  template <typename Drop>
  void DiscardWhere(Drop drop) ABSL_LOCKS_EXCLUDED(mu_);
  bool Fresh(const Waiting& waiting, std::chrono::steady_clock::time_point now) const;

  ChannelPool& channels_;
  CompletionQueueLoop& queues_;
  const absl::Duration lease_;
  const absl::Duration max_idle_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<Key, Waiting> waiting_ ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point last_sweep_ ABSL_GUARDED_BY(mu_){};
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_STANDBY_PREFILL_STREAMS_H_
