#include "engine/server/worker_process.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "comm/gloo_communicator.h"
#include "common/status_macros.h"
#include "engine/runtime/loaded_model.h"
#include "engine/server/frontend.h"
#include "engine/server/kv_transfer_service.h"
#include "engine/server/proto_convert.h"
#include "engine/server/router_key_value_store.h"
#include "engine/server/router_membership.h"
#include "engine/server/shutdown_signal.h"
#include "engine/server/worker_service.h"
#include "tessera/internal/v1/worker.grpc.pb.h"

namespace tessera::engine::server {
namespace {

using tessera::internal::v1::Control;
using tessera::internal::v1::WorkerRole;

tessera::internal::v1::WorkerLoad ToProto(const LoopLoad& load, int32_t queued,
                                          const KvPuller& puller, const CachePoolClient& pool,
                                          const Model& model) {
  tessera::internal::v1::WorkerLoad proto;
  proto.set_running_sequences(load.running_sequences);
  proto.set_queued_prefill_tokens(load.queued_prefill_tokens);
  proto.set_free_kv_blocks(load.free_kv_blocks);
  proto.set_total_kv_blocks(load.total_kv_blocks);
  proto.set_held_handoffs(load.held_handoffs);
  proto.set_queued_requests(queued);
  proto.set_kv_pulls_shared_memory(puller.shared_memory_pulls());
  proto.set_kv_pulls_network(puller.network_pulls());
  proto.set_kv_bytes_pulled(puller.total_bytes());
  tessera::internal::v1::KvCacheStats* kv = proto.mutable_kv_cache();
  kv->set_lookups(load.kv.lookups);
  kv->set_device_hits(load.kv.device_hits);
  kv->set_host_hits(load.kv.host_hits);
  kv->set_offloaded(load.kv.offloaded);
  kv->set_restored(load.kv.restored);
  kv->set_evicted_device(load.kv.evicted_device);
  kv->set_evicted_host(load.kv.evicted_host);
  kv->set_bytes_moved(load.kv_bytes_moved);
  kv->set_preemptions(load.preemptions);
  kv->set_cached_device_blocks(load.cached_device_blocks);
  kv->set_cached_host_blocks(load.cached_host_blocks);
  kv->set_host_blocks(load.host_blocks);
  kv->set_cached_prompt_tokens(load.cached_prompt_tokens);
  kv->set_held_hashes(load.held_hashes);
  kv->set_pool_lookups(pool.lookups());
  kv->set_pool_hits(pool.hits());
  kv->set_pool_puts(pool.puts());
  const ExpertTokenCounts experts = model.expert_token_counts();
  proto.set_num_experts(experts.num_experts);
  proto.mutable_expert_layers()->Add(experts.layers.begin(), experts.layers.end());
  proto.mutable_expert_tokens()->Add(experts.tokens.begin(), experts.tokens.end());
  return proto;
}

}  // namespace

std::string LocalHostId() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::string boot_id;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot_id;
  return absl::StrCat(host, "/", boot_id);
}

absl::StatusOr<WorkerRole> ParseWorkerRole(absl::string_view name) {
  if (name == "prefill") return tessera::internal::v1::ROLE_PREFILL;
  if (name == "decode") return tessera::internal::v1::ROLE_DECODE;
  if (name == "both") return tessera::internal::v1::ROLE_BOTH;
  return absl::InvalidArgumentError(
      absl::StrCat("--role must be prefill, decode or both, got '", name, "'"));
}

absl::string_view WorkerRoleName(WorkerRole role) {
  switch (role) {
    case tessera::internal::v1::ROLE_PREFILL:
      return "prefill";
    case tessera::internal::v1::ROLE_DECODE:
      return "decode";
    case tessera::internal::v1::ROLE_BOTH:
      return "both";
    case tessera::internal::v1::ROLE_CACHE:
      return "cache";
    default:
      return "unknown";
  }
}

absl::Status RunWorker(const WorkerOptions& options) {
  // Before any thread starts: threads inherit their creator's niceness.
  if (options.nice != 0 && setpriority(PRIO_PROCESS, 0, options.nice) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nice ", options.nice, ": cannot set: ", std::strerror(errno)));
  }
  InstallShutdownSignalHandlers();
  // See RunRouter: no deadlock-cycle bookkeeping on every lock in release builds.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  ChannelPool channels;
  // An expert-parallel rank first meets the rest of its group: the model loads only this
  // rank's experts.
  std::unique_ptr<comm::GlooCommunicator> group;
  std::unique_ptr<comm::GlooCommunicator> overlap_group;
  ModelOptions model_options;
  if (options.ep_size > 1) {
    if (options.ep_rank < 0 || options.ep_rank >= options.ep_size || options.ep_group.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--ep-rank must be in [0, --ep-size) and --ep-group set, got rank ", options.ep_rank,
          " of ", options.ep_size, " in group '", options.ep_group, "'"));
    }
    RouterKeyValueStore store(channels.Get(options.router_address));
    comm::GlooOptions gloo;
    gloo.hostname = AdvertisedHost(options.listen_address, options.advertise_host);
    gloo.timeout = options.ep_timeout;
    // Joins the group's communicator named `suffix` (each forms its own connections).
    auto join = [&](absl::string_view suffix, absl::string_view what)
        -> absl::StatusOr<std::unique_ptr<comm::GlooCommunicator>> {
      absl::StatusOr<std::unique_ptr<comm::GlooCommunicator>> joined =
          comm::GlooCommunicator::Connect(store, absl::StrCat("ep/", options.ep_group, suffix),
                                          options.ep_rank, options.ep_size, gloo);
      if (!joined.ok()) {
        return absl::Status(joined.status().code(),
                            absl::StrCat("expert-parallel group '", options.ep_group, "'", what,
                                         ": ", joined.status().message()));
      }
      return joined;
    };
    TESSERA_ASSIGN_OR_RETURN(group, join("", ""));
    model_options.expert_group = group.get();
    if (options.ep_overlap) {
      // The second micro-batch's collectives get a communicator of their own, so the two
      // lanes' exchanges pair up across ranks whatever order they reach them in.
      TESSERA_ASSIGN_OR_RETURN(overlap_group, join("/lane1", ", second lane"));
      model_options.overlap_group = overlap_group.get();
      model_options.overlap_min_tokens = options.ep_overlap_min_tokens;
    }
    model_options.ffn_experts = options.ffn_experts;
    model_options.redundant_experts = options.redundant_experts;
    model_options.rebalance_interval = options.rebalance_interval;
  }
  TESSERA_ASSIGN_OR_RETURN(LoadedModel model,
                           LoadedModel::Load(options.model_path, options.threads, model_options));
  StepLoopOptions loop_options = options.loop;
  loop_options.lockstep = group != nullptr;
  const int64_t bytes_per_block =
      KvShapeFor(model.model->config(), loop_options.block_size, 1).bytes_per_block();
  if (options.device_kv_bytes > 0) {
    loop_options.num_blocks = static_cast<int32_t>(options.device_kv_bytes / bytes_per_block);
    if (loop_options.num_blocks < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--kv-bytes ", options.device_kv_bytes,
                                                     " is less than one block (", bytes_per_block,
                                                     " bytes)"));
    }
  }
  if (options.host_kv_bytes > 0) {
    loop_options.host_blocks = static_cast<int32_t>(options.host_kv_bytes / bytes_per_block);
  }
  // Prefill workers keep their KV in shared memory so decode workers on this host copy it
  // straight out; without room in /dev/shm they fall back to sending it over gRPC.
  loop_options.shared_kv_memory = options.role == tessera::internal::v1::ROLE_PREFILL;
  absl::StatusOr<std::unique_ptr<StepLoop>> created =
      StepLoop::Create(*model.model, *model.tokenizer, loop_options);
  if (!created.ok() && loop_options.shared_kv_memory) {
    std::cerr << "tessera worker: KV cache not shareable (" << created.status().message()
              << "); decode workers will receive KV over gRPC" << std::endl;
    loop_options.shared_kv_memory = false;
    created = StepLoop::Create(*model.model, *model.tokenizer, loop_options);
  }
  if (!created.ok()) return created.status();
  std::unique_ptr<StepLoop> loop = *std::move(created);

  WorkerContext context;
  context.role = options.role;
  context.host_id = LocalHostId();
  context.force_network_kv = options.force_network_kv;
  context.max_requests = options.max_requests;
  context.model_config = model.model->config();
  context.cache = &loop->cache();
  HandoffRegistry handoffs(model.model->config().num_layers);
  context.handoffs = &handoffs;
  KvPuller puller(channels, context.host_id, options.force_network_kv, options.fault_fail_kv_pulls);
  context.puller = &puller;
  const uint64_t kv_hash_seed = loop->kv_hash_seed();
  const int32_t kv_block_size = loop->block_size();
  // Blocks this worker computes go to the cache pool (when there is one), off the step thread.
  CachePoolClient pool(channels);
  context.pool = &pool;
  // Stored blocks also wake the loop below that publishes KV changes to the router: the next
  // request with the same prefix must find them in the router's index, and a short request
  // can finish well within the loop's 20 ms period.
  absl::Mutex kv_wake_mu;
  bool kv_stored = false;
  auto put_in_pool = [&pool, &kv_wake_mu, &kv_stored](StepLoop& loop,
                                                      const std::vector<uint64_t>& stored) {
    {
      absl::MutexLock lock(&kv_wake_mu);
      kv_stored = true;
    }
    if (!pool.has_servers()) return;
    std::vector<std::pair<uint64_t, std::string>> blocks;
    for (uint64_t hash : stored) {
      if (std::optional<std::string> kv = loop.ExportBlock(hash); kv.has_value()) {
        blocks.emplace_back(hash, *std::move(kv));
      }
    }
    pool.Put(std::move(blocks));
  };
  StepThread step(std::move(loop), put_in_pool, group.get());
  context.step = &step;

  WorkerService worker_service(context);
  KvTransferService transfer_service(context);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen_address, grpc::InsecureServerCredentials(), &port);
  // Callers on this host (the router of a one-host deployment) reach the same services over a
  // Unix socket: a request costs them a fraction of a loopback TCP write.
  const std::string local_address =
      absl::StrCat("unix-abstract:tessera-worker-", getpid(), "-", absl::Hex(std::random_device{}()));
  int local_port = 0;
  builder.AddListeningPort(local_address, grpc::InsecureServerCredentials(), &local_port);
  builder.SetMaxReceiveMessageSize(kMaxInternalMessageBytes);
  builder.SetMaxSendMessageSize(kMaxInternalMessageBytes);
  // What this server receives is small (requests, KV pull requests); the bulk KV it sends is
  // paced by the puller's window.
  ApplyChannelTraffic(ChannelTraffic::kSmallMessages, builder);
  builder.RegisterService(&worker_service);
  builder.RegisterService(&transfer_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  const std::string address =
      AdvertisedAddress(options.listen_address, options.advertise_host, port);

  auto control = Control::NewStub(channels.Get(options.router_address));
  tessera::internal::v1::RegisterRequest registration;
  registration.set_role(options.role);
  registration.set_address(address);
  registration.set_model_id(ModelIdFromPath(options.model_path));
  registration.set_context_length(model.model->config().context_length);
  registration.set_host_id(context.host_id);
  if (local_port != 0) registration.set_local_address(local_address);
  registration.set_pid(getpid());
  registration.set_kv_hash_seed(kv_hash_seed);
  registration.set_kv_block_size(kv_block_size);
  if (group != nullptr) {
    registration.set_ep_group(options.ep_group);
    registration.set_ep_rank(options.ep_rank);
    registration.set_ep_size(options.ep_size);
  }
  auto current_load = [&] {
    return ToProto(step.load(), context.active_requests.load(), puller, pool, *model.model);
  };
  auto register_once = [&] { return RegisterOnce(*control, registration, current_load); };
  absl::StatusOr<std::string> worker_id =
      RegisterWithRetry(*control, registration, current_load, options.router_address);
  if (!worker_id.ok()) {
    server->Shutdown();
    return worker_id.status();
  }
  std::string expert_parallel;
  if (group != nullptr) {
    expert_parallel = absl::StrCat(", expert-parallel rank ", options.ep_rank, " of ",
                                   options.ep_size);
    if (overlap_group != nullptr) {
      absl::StrAppend(&expert_parallel, ", micro-batch overlap from ",
                      options.ep_overlap_min_tokens, " tokens");
    }
  }
  std::cerr << "tessera worker " << *worker_id << ": " << WorkerRoleName(options.role) << " on "
            << address << " (pid " << getpid() << expert_parallel << ")" << std::endl;

  // KV holdings go to the router as numbered change batches (a snapshot first, and whenever
  // the router lost track), so its routing index is exact without polling.
  const uint64_t epoch = (static_cast<uint64_t>(getpid()) << 32) ^
                         static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  int64_t kv_sequence = 0;
  bool need_snapshot = true;
  auto publish_kv = [&] {
    KvBatch batch = need_snapshot ? step.TakeKvSnapshot() : step.TakeKvChanges();
    if (batch.empty()) return;
    tessera::internal::v1::KvEvents events;
    events.set_worker_id(*worker_id);
    events.set_epoch(epoch);
    events.set_sequence(batch.snapshot ? 0 : kv_sequence + 1);
    events.set_snapshot(batch.snapshot);
    for (uint64_t h : batch.stored) events.add_stored(h);
    for (uint64_t h : batch.removed) events.add_removed(h);
    grpc::ClientContext rpc;
    rpc.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    tessera::internal::v1::KvEventsAck ack;
    if (!control->PublishKvEvents(&rpc, events, &ack).ok()) {
      need_snapshot = true;  // The router may or may not have it: start over.
      return;
    }
    kv_sequence = events.sequence();
    need_snapshot = ack.need_snapshot();
  };

  // Heartbeats until drained or signalled; then finish what is running and leave.
  bool leaving = false;
  absl::Status group_status;
  absl::Time next_beat = absl::Now();
  while (true) {
    if (ShutdownRequested() && !leaving) {
      leaving = true;
      context.draining = true;
    }
    if (group != nullptr) {
      // A group drains as one: when any rank does, all do. One that broke serves no more.
      if (leaving) step.SetDraining();
      if (step.group_draining() && !leaving) {
        std::cerr << "tessera worker " << *worker_id << ": the expert-parallel group is draining"
                  << std::endl;
        leaving = true;
        context.draining = true;
      }
      if (absl::Status failed = step.group_failure(); !failed.ok()) {
        group_status = failed;
        break;
      }
    }
    if (leaving && context.active_requests.load() == 0) break;
    if (absl::Now() >= next_beat) {
      next_beat = absl::Now() + options.heartbeat_interval;
      tessera::internal::v1::HeartbeatRequest beat;
      beat.set_worker_id(*worker_id);
      *beat.mutable_load() =
          ToProto(step.load(), context.active_requests.load(), puller, pool, *model.model);
      grpc::ClientContext rpc;
      rpc.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
      tessera::internal::v1::HeartbeatResponse response;
      if (control->Heartbeat(&rpc, beat, &response).ok()) {
        pool.SetServers({response.cache_servers().begin(), response.cache_servers().end()});
        if (!response.known()) {
          if (absl::StatusOr<std::string> id = register_once(); id.ok()) {
            worker_id = id;
            need_snapshot = true;
          }
        } else if (response.drain() && !leaving) {
          std::cerr << "tessera worker " << *worker_id << ": draining" << std::endl;
          leaving = true;
          context.draining = true;
          if (group != nullptr) step.SetDraining();
        }
      }
    }
    publish_kv();
    absl::MutexLock lock(&kv_wake_mu);
    kv_wake_mu.AwaitWithTimeout(absl::Condition(&kv_stored), absl::Milliseconds(20));
    kv_stored = false;
  }
  {
    tessera::internal::v1::DeregisterRequest request;
    request.set_worker_id(*worker_id);
    grpc::ClientContext rpc;
    rpc.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    tessera::internal::v1::DeregisterResponse response;
    control->Deregister(&rpc, request, &response);
  }
  // The router no longer sends requests here: the streams it opened ahead of them end now.
  context.idle_calls.CancelAll();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  std::cerr << "tessera worker " << *worker_id << ": stopped" << std::endl;
  return group_status;
}

}  // namespace tessera::engine::server
