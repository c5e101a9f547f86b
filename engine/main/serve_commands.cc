#include "engine/main/serve_commands.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/runtime/loaded_model.h"
#include "engine/main/command_status.h"
#include "engine/server/shutdown_signal.h"
#include "tessera/v1/admin.grpc.pb.h"

namespace tessera::engine {
namespace {

absl::StatusOr<tessera::v1::ListWorkersResponse> ListWorkers(const std::string& router) {
  auto stub =
      tessera::v1::Admin::NewStub(grpc::CreateChannel(router, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  tessera::v1::ListWorkersResponse response;
  grpc::Status status = stub->ListWorkers(&context, {}, &response);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat("router at ", router, ": ", status.error_message()));
  }
  return response;
}

}  // namespace

RouterCommand::RouterCommand(CLI::App& app) {
  command_ = app.add_subcommand("router", "Run the router: the gRPC, HTTP and admin front door");
  options_.model_path = DefaultModelPath();
  command_->add_option("--model", options_.model_path,
                       "GGUF model file or checkpoint directory (tokenizer and facts)")
      ->check(CLI::ExistingPath);
  command_->add_option("--grpc", options_.grpc_address, "gRPC listen address");
  command_->add_option("--http", options_.http_address, "HTTP listen address (empty: none)");
  command_
      ->add_option("--max-in-flight", options_.frontend.max_in_flight,
                   "Requests in flight before RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1, 1 << 20));
  command_
      ->add_option("--realtime-priority", options_.realtime_priority,
                   "Run the router's threads under SCHED_FIFO at this priority (1-99; 0: "
                   "normal scheduling), so busy workers on the same host never delay it. "
                   "Needs CAP_SYS_NICE")
      ->check(CLI::Range(0, 99));
  command_
      ->add_option("--io-threads", options_.io_threads,
                   "Threads serving gRPC requests and worker calls, each draining its own "
                   "completion queue")
      ->check(CLI::Range(1, 64));
  command_->add_flag("--standby-prefill-streams,!--no-standby-prefill-streams",
                     options_.dispatcher.standby_prefill_streams,
                     "Open each prefill worker's next stream ahead of its request (default on)");
  command_
      ->add_option("--heartbeat-timeout-ms", heartbeat_timeout_ms_,
                   "Drop a worker after this long without a heartbeat")
      ->check(CLI::Range(100, 600000));
  command_
      ->add_option("--route-load-weight", options_.registry.routing.load_weight,
                   "Prefill routing: weight of a worker's load (queued prompt tokens)")
      ->check(CLI::Range(0.0, 1e9));
  command_
      ->add_option("--route-overlap-weight", options_.registry.routing.overlap_weight,
                   "Prefill routing: weight of prompt tokens already cached on a worker "
                   "(0: route by load only)")
      ->check(CLI::Range(0.0, 1e9));
}

int RouterCommand::Run() {
  options_.registry.heartbeat_timeout = std::chrono::milliseconds(heartbeat_timeout_ms_);
  absl::Status status = server::RunRouter(options_);
  return status.ok() ? 0 : Fail("router", status);
}

WorkerCommand::WorkerCommand(CLI::App& app) {
  command_ = app.add_subcommand("worker", "Run a prefill, decode or colocated worker");
  options_.model_path = DefaultModelPath();
  // A colocated worker's decodes wait behind at most 128 prompt tokens per step (measured on
  // the Azure and Mooncake traces: higher goodput than the full 512 at every load tried).
  options_.loop.planner.max_tokens_per_decode_step = 128;
  command_->add_option("--model", options_.model_path,
                       "GGUF model file or Hugging Face checkpoint directory")
      ->check(CLI::ExistingPath);
  command_->add_option("--role", role_, "prefill, decode or both")
      ->check(CLI::IsMember({"prefill", "decode", "both"}));
  command_->add_option("--router", options_.router_address, "Router gRPC address")->required();
  command_->add_option("--listen", options_.listen_address, "Listen address (port 0: any)");
  command_->add_option("--advertise-host", options_.advertise_host,
                       "Host name other processes reach this worker at");
  command_
      ->add_option("--nice", options_.nice,
                   "Scheduling niceness of the worker's threads (0-19); on a host shared "
                   "with the router, a positive value keeps compute from delaying it")
      ->check(CLI::Range(0, 19));
  command_->add_option("--threads", options_.threads, "Compute threads (0: one per core)")
      ->check(CLI::Range(0, 1024));
  command_->add_option("--block-size", options_.loop.block_size, "Tokens per KV block")
      ->check(CLI::Range(1, 4096));
  command_
      ->add_option("--kv-blocks", options_.loop.num_blocks, "Device-tier KV blocks (0: automatic)")
      ->check(CLI::Range(0, 1 << 24));
  command_
      ->add_option("--kv-bytes", options_.device_kv_bytes,
                   "Device-tier KV budget in bytes (instead of --kv-blocks)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 44));
  command_
      ->add_option("--host-kv-blocks", options_.loop.host_blocks,
                   "Host-tier KV blocks: where evicted cached blocks wait (0: none)")
      ->check(CLI::Range(0, 1 << 24));
  command_
      ->add_option("--host-kv-bytes", options_.host_kv_bytes,
                   "Host-tier KV budget in bytes (instead of --host-kv-blocks)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 44));
  command_->add_flag("--no-prefix-caching", no_prefix_caching_,
                     "Never reuse cached KV blocks across requests");
  command_
      ->add_option("--preemption", preemption_,
                   "When KV runs out: swap a sequence to the host tier, or recompute it")
      ->check(CLI::IsMember({"recompute", "swap"}));
  command_
      ->add_option("--max-batch", options_.loop.planner.max_sequences_per_step,
                   "Sequences per step at most")
      ->check(CLI::Range(1, 4096));
  command_
      ->add_option("--step-tokens", options_.loop.planner.max_tokens_per_step,
                   "Token budget per step (chunked prefill)")
      ->check(CLI::Range(1, 1 << 20));
  command_
      ->add_option("--decode-step-tokens", options_.loop.planner.max_tokens_per_decode_step,
                   "Token budget of a step that also decodes (0: --step-tokens): smaller keeps "
                   "decodes from waiting behind prefill chunks")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  command_
      ->add_option("--prefill-order", prefill_order_,
                   "Which waiting prompt is prefilled first: the one with the fewest tokens left "
                   "to compute, or the oldest")
      ->check(CLI::IsMember({"shortest", "arrival"}));
  command_
      ->add_option("--prefill-max-wait-ms", prefill_max_wait_ms_,
                   "With --prefill-order shortest: a prompt waiting this long goes first")
      ->check(CLI::Range(int64_t{0}, int64_t{86'400'000}));
  command_
      ->add_option("--max-requests", options_.max_requests,
                   "Requests in flight before RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1, 1 << 20));
  command_->add_flag("--network-kv", options_.force_network_kv,
                     "Move KV over gRPC even between processes on one host");
  command_
      ->add_option("--fault-fail-kv-pulls", options_.fault_fail_kv_pulls,
                   "Fault injection for tests: break this many incoming KV transfers")
      ->check(CLI::Range(0, 1 << 20));
  command_
      ->add_option("--ep-size", options_.ep_size,
                   "Expert parallelism: processes in this worker's group (1: none)")
      ->check(CLI::Range(1, 1024));
  command_->add_option("--ep-rank", options_.ep_rank, "This process's rank in the group")
      ->check(CLI::Range(0, 1023));
  command_->add_option("--ep-group", options_.ep_group,
                       "The group's name, new for each start of the group (the ranks meet "
                       "under it at the router)");
  command_
      ->add_option("--ffn-experts", options_.ffn_experts,
                   "Dense models in a group: run each FFN as this many experts")
      ->check(CLI::Range(1, 4096));
  command_->add_flag("--ep-overlap", options_.ep_overlap,
                     "Expert parallelism with a Hugging Face MoE model: run large steps as two "
                     "micro-batches whose dispatch and combine overlap each other's compute");
  command_
      ->add_option("--ep-overlap-min-tokens", options_.ep_overlap_min_tokens,
                   "With --ep-overlap: split only steps of at least this many tokens")
      ->check(CLI::Range(0, 1 << 24));
  command_
      ->add_option("--redundant-experts", options_.redundant_experts,
                   "Expert rebalancing: extra expert slots per rank for copies of hot experts")
      ->check(CLI::Range(0, 4096));
  command_
      ->add_option("--rebalance-interval", options_.rebalance_interval,
                   "Expert rebalancing: steps between rebalances (0: never)")
      ->check(CLI::Range(0, 1 << 30));
  command_
      ->add_option("--ep-timeout-ms", ep_timeout_ms_,
                   "Bound on forming the group and on every collective")
      ->check(CLI::Range(100, 3600000));
}

int WorkerCommand::Run() {
  absl::StatusOr<tessera::internal::v1::WorkerRole> role = server::ParseWorkerRole(role_);
  if (!role.ok()) return Fail("worker", role.status());
  options_.role = *role;
  options_.ep_timeout = absl::Milliseconds(ep_timeout_ms_);
  options_.loop.prefix_caching = !no_prefix_caching_;
  options_.loop.preemption = preemption_ == "swap" ? StepLoopOptions::Preemption::kSwap
                                                   : StepLoopOptions::Preemption::kRecompute;
  options_.loop.planner.prefill_order = prefill_order_ == "arrival"
                                            ? scheduler::PrefillOrder::kArrival
                                            : scheduler::PrefillOrder::kShortestFirst;
  options_.loop.planner.max_prefill_wait_us = prefill_max_wait_ms_ * 1000;
  absl::Status status = server::RunWorker(options_);
  return status.ok() ? 0 : Fail("worker", status);
}

ServeCommand::ServeCommand(CLI::App& app) {
  command_ = app.add_subcommand(
      "serve", "Run a whole deployment on this host: a router and prefill/decode workers");
  model_path_ = DefaultModelPath();
  command_->add_option("--model", model_path_,
                       "GGUF model file or Hugging Face checkpoint directory")
      ->check(CLI::ExistingPath);
  command_->add_option("--grpc", grpc_address_, "gRPC listen address");
  command_->add_option("--http", http_address_, "HTTP listen address");
  command_->add_option("--prefill", prefill_, "Prefill workers")->check(CLI::Range(0, 64));
  command_->add_option("--decode", decode_, "Decode workers")->check(CLI::Range(0, 64));
  command_->add_option("--both", both_, "Colocated (prefill and decode) workers")
      ->check(CLI::Range(0, 64));
  command_->add_option("--cache", cache_, "KV cache pool servers")->check(CLI::Range(0, 64));
  command_->add_option("--cache-bytes", cache_bytes_, "Host memory per cache server")
      ->check(CLI::Range(int64_t{1} << 20, int64_t{1} << 44));
  command_
      ->add_option("--worker-threads", worker_threads_,
                   "Compute threads per worker (0: the cores shared among the workers)")
      ->check(CLI::Range(0, 1024));
  command_->add_option("--max-in-flight", max_in_flight_, "Router admission bound")
      ->check(CLI::Range(1, 1 << 20));
  command_->add_flag("--network-kv", network_kv_,
                     "Move KV over gRPC even though the workers share this host");
  command_
      ->add_option("--ep", ep_,
                   "Expert parallelism: every worker instance is a group of this many "
                   "processes that share its experts and step together")
      ->check(CLI::Range(1, 64));
  command_->add_option("--router-flag", router_flags_,
                       "Pass a flag to the router (repeatable), e.g. "
                       "--router-flag=--route-overlap-weight=0");
  command_->add_option("--worker-flag", worker_flags_,
                       "Pass a flag to every worker (repeatable), e.g. "
                       "--worker-flag=--host-kv-blocks=2048");
}

int ServeCommand::Run() {
  const int instances = prefill_ + decode_ + both_;
  const int workers = instances * ep_;
  if (instances == 0) {
    std::fprintf(stderr, "tessera serve: --prefill, --decode and --both are all 0\n");
    return 2;
  }
  if ((prefill_ > 0) != (decode_ > 0) && both_ == 0) {
    std::fprintf(stderr,
                 "tessera serve: a disaggregated deployment needs both --prefill and --decode "
                 "workers (or use --both)\n");
    return 2;
  }
  server::InstallShutdownSignalHandlers();
  int threads = worker_threads_;
  if (threads == 0) {
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / workers);
  }
  const std::string self = "/proc/self/exe";
  auto spawn = [&](std::vector<std::string> args) -> pid_t {
    pid_t pid = fork();
    if (pid == 0) {
      // Children take SIGINT/SIGTERM from serve, not from the terminal's process group.
      setpgid(0, 0);
      std::vector<char*> argv;
      std::string name = "tessera";
      argv.push_back(name.data());
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(self.c_str(), argv.data());
      std::perror("tessera serve: exec");
      _exit(127);
    }
    return pid;
  };
  std::vector<pid_t> worker_pids;
  std::vector<std::string> router_args = {
      "router",      "--model",         model_path_,
      "--grpc",      grpc_address_,     "--http",
      http_address_, "--max-in-flight", std::to_string(max_in_flight_)};
  router_args.insert(router_args.end(), router_flags_.begin(), router_flags_.end());
  pid_t router = spawn(router_args);
  // Group names new for each start: the ranks meet under them at the router.
  const std::string ep_prefix = absl::StrCat("serve-", getpid(), "-", time(nullptr));
  int groups = 0;
  auto start_workers = [&](const char* role, int count) {
    for (int i = 0; i < count; ++i) {
      const std::string group = absl::StrCat(ep_prefix, "-", role, "-", groups++);
      for (int rank = 0; rank < ep_; ++rank) {
        std::vector<std::string> args = {"worker",    "--role",      role,
                                         "--router",  grpc_address_, "--model",
                                         model_path_, "--threads",   std::to_string(threads)};
        if (network_kv_) args.push_back("--network-kv");
        if (ep_ > 1) {
          args.insert(args.end(), {"--ep-size", std::to_string(ep_), "--ep-rank",
                                   std::to_string(rank), "--ep-group", group});
        }
        args.insert(args.end(), worker_flags_.begin(), worker_flags_.end());
        worker_pids.push_back(spawn(args));
      }
    }
  };
  // Waits (up to a minute) until `count` processes have registered with the router.
  auto wait_registered = [&](int count) {
    for (int i = 0; i < 600 && !server::ShutdownRequested(); ++i) {
      absl::StatusOr<tessera::v1::ListWorkersResponse> list = ListWorkers(grpc_address_);
      if (list.ok() && list->workers_size() >= count) return true;
      int status = 0;
      if (waitpid(router, &status, WNOHANG) == router) {
        std::fprintf(stderr, "tessera serve: the router exited during start-up\n");
        router = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  // Cache servers first: workers learn of them from heartbeat replies, and one that joined
  // before them hears of them in its first, so the pool serves from the first request.
  std::vector<pid_t> cache_pids;
  for (int i = 0; i < cache_; ++i) {
    cache_pids.push_back(spawn(
        {"cache", "--router", grpc_address_, "--capacity-bytes", std::to_string(cache_bytes_)}));
  }
  bool ready = cache_ == 0 || wait_registered(cache_);
  if (ready) {
    start_workers("prefill", prefill_);
    start_workers("decode", decode_);
    start_workers("both", both_);
    // Ready when every worker has registered.
    ready = wait_registered(workers + cache_);
  }
  if (ready) {
    std::printf(
        "tessera serve: ready (%d prefill, %d decode, %d colocated workers, %d cache "
        "servers)\n",
        prefill_, decode_, both_, cache_);
    if (ep_ > 1) {
      std::printf("  each worker is an expert-parallel group of %d processes\n", ep_);
    }
    std::printf("  gRPC  %s  (tessera.v1.Inference, tessera.v1.Admin, health, reflection)\n",
                grpc_address_.c_str());
    std::printf("  HTTP  http://%s/v1  (OpenAI-compatible; /health, /metrics)\n",
                http_address_.c_str());
    std::fflush(stdout);
  }
  while (ready && !server::ShutdownRequested()) {
    int status = 0;
    pid_t done = waitpid(-1, &status, WNOHANG);
    if (done == router) {
      std::fprintf(stderr, "tessera serve: the router exited; stopping\n");
      router = -1;
      break;
    }
    if (done > 0) {
      std::fprintf(stderr, "tessera serve: worker pid %d exited (%s %d)\n", done,
                   WIFSIGNALED(status) ? "signal" : "status",
                   WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
      std::erase(worker_pids, done);
      std::erase(cache_pids, done);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Workers first (they deregister and finish their requests), then the router.
  worker_pids.insert(worker_pids.end(), cache_pids.begin(), cache_pids.end());
  for (pid_t pid : worker_pids) kill(pid, SIGTERM);
  for (pid_t pid : worker_pids) {
    int status = 0;
    for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (kill(pid, 0) == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
  }
  if (router > 0) {
    kill(router, SIGTERM);
    int status = 0;
    waitpid(router, &status, 0);
  }
  std::fprintf(stderr, "tessera serve: stopped\n");
  return ready ? 0 : 1;
}

CacheCommand::CacheCommand(CLI::App& app) {
  command_ = app.add_subcommand("cache", "Run a KV cache pool server (blocks in host memory)");
  command_->add_option("--router", options_.router_address, "Router gRPC address")->required();
  command_->add_option("--listen", options_.listen_address, "Listen address (port 0: any)");
  command_->add_option("--advertise-host", options_.advertise_host,
                       "Host name other processes reach this server at");
  command_
      ->add_option("--capacity-bytes", options_.capacity_bytes,
                   "Host memory for blocks; the least recently used go first")
      ->check(CLI::Range(int64_t{1} << 20, int64_t{1} << 44));
}

int CacheCommand::Run() {
  absl::Status status = server::RunCacheServer(options_);
  return status.ok() ? 0 : Fail("cache", status);
}

AdminCommand::AdminCommand(CLI::App& app) {
  command_ = app.add_subcommand("admin", "Operate a running deployment");
  command_->require_subcommand(1);
  command_->fallthrough();  // --router may come after the subcommand too.
  command_->add_option("--router", router_, "Router gRPC address");
  workers_ = command_->add_subcommand("workers", "List the workers with their load");
  workers_->add_flag("--json", json_, "Print JSON");
  drain_ = command_->add_subcommand(
      "drain", "Stop sending work to a worker; it finishes its requests and exits");
  drain_->add_option("worker", worker_, "Worker id or address")->required();
}

int AdminCommand::Run() {
  if (workers_->parsed()) {
    absl::StatusOr<tessera::v1::ListWorkersResponse> list = ListWorkers(router_);
    if (!list.ok()) return Fail("admin", list.status());
    if (json_) {
      std::printf("[");
      for (int i = 0; i < list->workers_size(); ++i) {
        const auto& w = list->workers(i);
        std::printf(
            "%s{\"worker_id\":\"%s\",\"role\":\"%s\",\"address\":\"%s\",\"state\":\"%s\","
            "\"running\":%d,\"queued_prefill_tokens\":%lld,\"free_kv_blocks\":%d,"
            "\"total_kv_blocks\":%d,\"in_flight\":%d,\"pid\":%lld,"
            "\"kv_lookups\":%lld,\"kv_device_hits\":%lld,\"kv_host_hits\":%lld,"
            "\"kv_offloaded\":%lld,\"kv_restored\":%lld,\"preemptions\":%lld,"
            "\"pool_lookups\":%lld,\"pool_hits\":%lld,\"pool_stored_bytes\":%lld,"
            "\"ep_group\":\"%s\",\"ep_rank\":%d,\"ep_size\":%d}",
            i ? "," : "", w.worker_id().c_str(), w.role().c_str(), w.address().c_str(),
            w.state().c_str(), w.running_sequences(),
            static_cast<long long>(w.queued_prefill_tokens()), w.free_kv_blocks(),
            w.total_kv_blocks(), w.in_flight(), static_cast<long long>(w.pid()),
            static_cast<long long>(w.kv_lookups()), static_cast<long long>(w.kv_device_hits()),
            static_cast<long long>(w.kv_host_hits()), static_cast<long long>(w.kv_offloaded()),
            static_cast<long long>(w.kv_restored()), static_cast<long long>(w.preemptions()),
            static_cast<long long>(w.pool_lookups()), static_cast<long long>(w.pool_hits()),
            static_cast<long long>(w.pool_stored_bytes()), w.ep_group().c_str(), w.ep_rank(),
            w.ep_size());
      }
      std::printf("]\n");
      return 0;
    }
    std::printf("%-12s %-8s %-22s %-9s %8s %8s %11s %10s %9s %9s %7s %s\n", "WORKER", "ROLE",
                "ADDRESS", "STATE", "RUNNING", "QUEUED", "KV USED", "IN FLIGHT", "KV HITS",
                "ON HOST", "PID", "EXPERT-PARALLEL");
    for (const auto& w : list->workers()) {
      std::string kv =
          absl::StrCat(w.total_kv_blocks() - w.free_kv_blocks(), "/", w.total_kv_blocks());
      std::string hits =
          w.kv_lookups() > 0
              ? absl::StrCat((100 * (w.kv_device_hits() + w.kv_host_hits())) / w.kv_lookups(), "%")
              : "-";
      std::string on_host = absl::StrCat(w.cached_host_blocks(), "/", w.host_blocks());
      // The ranks of an expert-parallel group form one instance.
      std::string ep = w.ep_size() > 1
                           ? absl::StrCat(w.ep_group(), " rank ", w.ep_rank(), "/", w.ep_size())
                           : "-";
      std::printf("%-12s %-8s %-22s %-9s %8d %8lld %11s %10d %9s %9s %7lld %s\n",
                  w.worker_id().c_str(), w.role().c_str(), w.address().c_str(), w.state().c_str(),
                  w.running_sequences(), static_cast<long long>(w.queued_prefill_tokens()),
                  kv.c_str(), w.in_flight(), hits.c_str(), on_host.c_str(),
                  static_cast<long long>(w.pid()), ep.c_str());
    }
    return 0;
  }
  auto stub =
      tessera::v1::Admin::NewStub(grpc::CreateChannel(router_, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  tessera::v1::DrainWorkerRequest request;
  request.set_worker_id(worker_);
  tessera::v1::DrainWorkerResponse response;
  grpc::Status status = stub->DrainWorker(&context, request, &response);
  if (!status.ok()) {
    std::fprintf(stderr, "tessera admin: %s\n", status.error_message().c_str());
    return status.error_code() == grpc::StatusCode::NOT_FOUND ? 2 : 1;
  }
  std::printf("draining %s\n", worker_.c_str());
  return 0;
}

}  // namespace tessera::engine
