#include "engine/server/router_process.h"

#include <sched.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <thread>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "engine/server/channel_pool.h"
#include "engine/server/health_service.h"
#include "engine/server/openai_http.h"
#include "engine/server/rendezvous_service.h"
#include "engine/server/router_services.h"
#include "engine/server/shutdown_signal.h"
#include "engine/server/worker_context.h"

namespace tessera::engine::server {

absl::Status RunRouter(const RouterOptions& options) {
  // Before any thread starts: threads inherit their creator's scheduling policy.
  if (options.realtime_priority > 0) {
    sched_param param{};
    param.sched_priority = options.realtime_priority;
    if (sched_setscheduler(0, SCHED_FIFO, &param) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("--realtime-priority ", options.realtime_priority,
                       ": cannot run under SCHED_FIFO: ", std::strerror(errno),
                       " (needs CAP_SYS_NICE or root)"));
    }
  }
  InstallShutdownSignalHandlers();
  // Debian's abseil checks every lock acquisition for deadlock cycles; that bookkeeping is
  // measurable per request and buys nothing in a release build.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  WorkerRegistryOptions registry_options = options.registry;
  registry_options.host_id = LocalHostId();
  WorkerRegistry registry(registry_options);
  // The router exchanges only requests and token events with workers.
  ChannelPool channels(ChannelTraffic::kSmallMessages);
  Metrics metrics;
  grpc::ServerBuilder builder;
  CompletionQueueLoop queues(builder, options.io_threads);
  Dispatcher dispatcher(registry, channels, queues, metrics, options.dispatcher);
  TESSERA_ASSIGN_OR_RETURN(
      std::unique_ptr<Frontend> frontend,
      Frontend::Create(options.model_path, dispatcher, metrics, options.frontend));

  InferenceService inference(*frontend);
  AdminService admin(registry);
  ControlService control(registry);
  RendezvousService rendezvous;
  // gRPC's default health service runs on the callback API, whose threads would poll the
  // router's sockets too; this one runs on the router's own queues.
  grpc::EnableDefaultHealthCheckService(false);
  HealthService health({"tessera.v1.Inference", "tessera.v1.Admin"});
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  int port = 0;
  builder.AddListeningPort(options.grpc_address, grpc::InsecureServerCredentials(), &port);
  // Oversized requests reach the handler, which refuses them with InvalidArgument naming the
  // limit, rather than being cut off by the transport.
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::max<int64_t>(options.frontend.max_request_bytes * 4, 16 << 20)));
  // Keep a few idle handler threads instead of creating one per burst of requests.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 2);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 8);
  ApplyChannelTraffic(ChannelTraffic::kSmallMessages, builder);
  builder.RegisterService(&inference);
  builder.RegisterService(&admin);
  builder.RegisterService(&control);
  builder.RegisterService(&rendezvous);
  builder.RegisterService(&health);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.grpc_address));
  }
  queues.Start();
  inference.ServeGenerate(queues);
  rendezvous.Serve(queues);
  health.Serve(queues);
  std::cerr << "tessera router: gRPC on " << options.grpc_address << " serving "
            << frontend->model_id() << std::endl;
  OpenAiHttpServer http(*frontend, registry, metrics);
  if (!options.http_address.empty()) {
    if (absl::Status status = http.Start(options.http_address); !status.ok()) {
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
      dispatcher.Close();
      queues.Shutdown();
      return status;
    }
    std::cerr << "tessera router: HTTP on " << options.http_address << std::endl;
  }

  while (!ShutdownRequested()) {
    for (const std::string& id : registry.Reap()) {
      std::cerr << "tessera router: " << id << " stopped heartbeating; dropped" << std::endl;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::cerr << "tessera router: shutting down" << std::endl;
  health.SetServing(false);  // Watching load balancers hear it before the connection goes.
  http.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  dispatcher.Close();  // The streams opened ahead of requests end too.
  queues.Shutdown();   // Once every call is over; then every last completion is drained.
  return absl::OkStatus();
}

}  // namespace tessera::engine::server
