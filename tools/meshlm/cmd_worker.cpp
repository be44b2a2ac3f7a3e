// meshlm worker: serve one pipeline stage for a coordinator (see src/dist/worker.h).
//   meshlm worker --listen 0.0.0.0:7070 --secret S --threads 8 [--model DIR]
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include <unistd.h>

#include <CLI/CLI.hpp>

#include "command.h"
#include "common.h"
#include "core/error.h"
#include "core/log.h"
#include "dist/worker.h"

namespace meshlm::cli {
namespace {

dist::Worker* g_worker = nullptr;

extern "C" void on_signal(int) {
  if (g_worker) g_worker->stop();
}

int run_worker(int argc, char** argv) {
  CLI::App app{"meshlm worker: serve pipeline stages for a coordinator"};
  dist::WorkerOptions options;
  options.threads = default_threads();
  std::string port_file;
  app.add_option("--listen", options.listen, "host:port to listen on (0.0.0.0 for all interfaces)")
      ->capture_default_str();
  app.add_option("--secret", options.secret, "shared cluster secret (default: $MESHLM_SECRET)");
  app.add_option("--threads", options.threads, "compute threads")->capture_default_str();
  app.add_option("--model", options.model_dir,
                 "model folder this worker holds (its fingerprint is checked in the handshake)");
  long parent_pid = 0;
  app.add_option("--exit-with-parent", parent_pid, "stop when process PID is gone (workers started by --stages)");
  app.add_option("--port-file", port_file, "write the bound port here once listening (tests)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (options.secret.empty()) {
    if (const char* s = std::getenv("MESHLM_SECRET")) options.secret = s;
  }
  if (options.secret.empty()) {
    log::warn("[worker] no cluster secret (--secret or MESHLM_SECRET): anyone who can reach {} "
              "can use this worker", options.listen);
  }
  if (options.threads < 1) throw Error("cli", "--threads must be at least 1");

  dist::Worker worker(options);
  if (!port_file.empty()) {
    std::string addr = worker.address();
    std::ofstream(port_file + ".tmp") << addr.substr(addr.rfind(':') + 1) << "\n";
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  g_worker = &worker;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  // A worker started by `--stages N` must not outlive its coordinator, even one killed with -9.
  std::atomic<bool> done{false};
  std::thread watchdog;
  if (parent_pid > 0)
    watchdog = std::thread([&] {
      while (!done.load()) {
        if (::getppid() != pid_t(parent_pid)) {
          worker.stop();
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
      }
    });
  worker.run();
  done.store(true);
  if (watchdog.joinable()) watchdog.join();
  g_worker = nullptr;
  return 0;
}

Registrar reg("worker", "serve pipeline stages for a coordinator (--listen host:port)",
              run_worker);

}  // namespace
}  // namespace meshlm::cli
