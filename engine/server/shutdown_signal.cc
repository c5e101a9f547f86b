#include "engine/server/shutdown_signal.h"

#include <signal.h>

#include <atomic>

namespace tessera::engine::server {
namespace {

std::atomic<bool> g_shutdown{false};

void OnSignal(int) { g_shutdown.store(true); }

}  // namespace

void InstallShutdownSignalHandlers() {
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);  // A peer that went away must not kill the process.
}

bool ShutdownRequested() { return g_shutdown.load(); }

void RequestShutdown() { g_shutdown.store(true); }

}  // namespace tessera::engine::server
