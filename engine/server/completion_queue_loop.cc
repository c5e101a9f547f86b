#include "engine/server/completion_queue_loop.h"

#include <algorithm>
#include <iostream>
#include <utility>

#include "absl/time/clock.h"

namespace tessera::engine::server {
namespace {

// The queue this thread drains, and whose loop it belongs to.
thread_local const CompletionQueueLoop* current_loop = nullptr;
thread_local grpc::CompletionQueue* current_queue = nullptr;

}  // namespace

CompletionQueueLoop::CompletionQueueLoop(grpc::ServerBuilder& builder, int threads) {
  for (int i = 0; i < std::max(threads, 1); ++i) queues_.push_back(builder.AddCompletionQueue());
}

void CompletionQueueLoop::Start() {
  for (auto& queue : queues_) {
    threads_.emplace_back([this, q = queue.get()] { Drain(q); });
  }
}

void CompletionQueueLoop::Shutdown(absl::Duration timeout) {
  if (std::exchange(shut_down_, true)) return;
  const absl::Time deadline = absl::Now() + timeout;
  while (live_.load() > 0 && !threads_.empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  if (live_.load() > 0 && !threads_.empty()) {
    std::cerr << "tessera: " << live_.load() << " calls still open at shutdown" << std::endl;
  }
  for (auto& queue : queues_) queue->Shutdown();
  for (std::thread& thread : threads_) thread.join();
  if (threads_.empty()) {  // Never started: drain here so gRPC frees what the queues hold.
    for (auto& queue : queues_) Drain(queue.get());
  }
}

void CompletionQueueLoop::Drain(grpc::ServerCompletionQueue* queue) {
  current_loop = this;
  current_queue = queue;
  void* tag = nullptr;
  bool ok = false;
  while (queue->Next(&tag, &ok)) static_cast<CompletionTag*>(tag)->Complete(ok);
  current_loop = nullptr;
  current_queue = nullptr;
}

grpc::CompletionQueue* CompletionQueueLoop::CurrentQueue() const {
  return current_loop == this ? current_queue : nullptr;
}

grpc::CompletionQueue* CompletionQueueLoop::ForNewCall() {
  if (current_loop == this) return current_queue;
  return queues_[next_.fetch_add(1, std::memory_order_relaxed) % queues_.size()].get();
}

}  // namespace tessera::engine::server
