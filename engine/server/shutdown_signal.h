// SIGINT and SIGTERM, turned into a flag that server loops poll: a process ends cleanly
// (deregisters, finishes requests, removes shared memory) instead of dying mid-request.
// Thread-safety: thread-safe.
#ifndef TESSERA_ENGINE_SERVER_SHUTDOWN_SIGNAL_H_
#define TESSERA_ENGINE_SERVER_SHUTDOWN_SIGNAL_H_

namespace tessera::engine::server {

// Installs the handlers (idempotent).
void InstallShutdownSignalHandlers();
// True once SIGINT or SIGTERM arrived.
bool ShutdownRequested();
// Sets the flag, as a signal would.
void RequestShutdown();

}  // namespace tessera::engine::server

#endif  // TESSERA_ENGINE_SERVER_SHUTDOWN_SIGNAL_H_
