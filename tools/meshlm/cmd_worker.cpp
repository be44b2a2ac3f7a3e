// meshlm worker: serve one pipeline stage for a coordinator (see src/remote/worker.h).
//   meshlm worker --listen 0.0.0.0:7070 --secret S --threads 8 [--model DIR] [--no-discovery]
// A worker on a LAN address advertises itself as `_meshlm._tcp` (src/discovery) so that
// `meshlm cluster status` and coordinators can find it; the secret is never advertised.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "cluster/layout.h"
#include "command.h"
#include "common.h"
#include "core/error.h"
#include "core/log.h"
#include "discovery/discovery.h"
#include "discovery/node_record.h"
#include "remote/worker.h"
#include "transport/frame.h"
#include "transport/messages.h"
#include "transport/transport.h"

namespace meshlm::cli {
namespace {

remote::Worker* g_worker = nullptr;

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// Publishes this worker on the LAN unless it listens on loopback only. Discovery is a
// convenience: when the mDNS stack cannot start, the worker runs on without it.
void advertise(discovery::Advertiser& advertiser, const std::string& address, int threads,
               const std::string& backend) {
  auto [host, port] = transport::parse_host_port(address);
  if (is_loopback(host)) {
    log::info(
        "[worker] LAN discovery off: {} is a loopback address (use --listen 0.0.0.0:PORT "
        "or a LAN address to be found by `meshlm cluster status`)",
        host);
    return;
  }
  if (!discovery::discovery_available()) {
    log::info("[worker] LAN discovery off: this build has no mDNS backend");
    return;
  }
  transport::NodeInfo node = transport::this_node_info(threads, backend);
  discovery::NodeRecord record;
  record.id = discovery::random_node_id();
  record.version = node.version;
  record.proto = transport::kProtocolVersion;
  record.mem = node.mem_available;
  record.mem_total = node.mem_total;
  record.cores = uint32_t(node.cores);
  record.backend = node.backend;
  try {
    advertiser.start(discovery::default_instance_name(port), port, discovery::node_txt(record),
                     host);
  } catch (const Error& e) {
    log::warn("[worker] LAN discovery off: {}", e.what());
  }
}

extern "C" void on_signal(int) {
  if (g_worker) g_worker->stop();
}

int run_worker(int argc, char** argv) {
  CLI::App app{"meshlm worker: serve pipeline stages for a coordinator"};
  remote::WorkerOptions options;
  options.threads = default_threads();
  std::string port_file;
  app.add_option("--listen", options.listen, "host:port to listen on (0.0.0.0 for all interfaces)")
      ->capture_default_str();
  app.add_option("--secret", options.secret, "shared cluster secret (default: $MESHLM_SECRET)");
  app.add_option("--threads", options.threads, "compute threads")->capture_default_str();
  app.add_flag("--mlock", options.lock_memory,
               "lock the weights of this worker's layers in RAM once loaded (needs `ulimit -l`)");
  app.add_option("--cache-dir", options.cache_dir,
                 "where layers received from the coordinator are kept (default: "
                 "$XDG_CACHE_HOME/meshlm or ~/.cache/meshlm)");
  app.add_option("--model", options.model_dir,
                 "model folder this worker holds (its fingerprint is checked in the handshake)");
  long parent_pid = 0;
  app.add_option("--exit-with-parent", parent_pid,
                 "stop when process PID is gone (workers started by --stages)");
  app.add_option("--port-file", port_file, "write the bound port here once listening (tests)");
  double coordinator_timeout_s = options.coordinator_timeout_ms / 1000.0;
  app.add_option("--heartbeat-timeout", coordinator_timeout_s,
                 "seconds of silence from a coordinator that pings before its session is dropped "
                 "(it vanished: power, cable); 0 = never")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  bool insecure = false;
  app.add_flag("--insecure", insecure,
               "allow listening beyond loopback without a cluster secret (anyone who can reach "
               "the port can use this worker)");
  app.add_option("--backend", options.stage_backend,
                 "compute backend: cpu (optimised kernels) or ref (scalar reference kernels, "
                 "one thread: for checking results)")
      ->check(CLI::IsMember({"cpu", "ref"}))
      ->capture_default_str();
  bool no_discovery = false;
  app.add_flag("--no-discovery", no_discovery,
               "do not advertise this worker on the LAN (DNS-SD `_meshlm._tcp` over mDNS)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (options.secret.empty()) {
    if (const char* s = std::getenv("MESHLM_SECRET")) options.secret = s;
  }
  options.coordinator_timeout_ms = int(coordinator_timeout_s * 1000);
  options.backend = cluster::compute_backend(options.stage_backend);
  if (options.secret.empty()) {
    const std::string host = transport::parse_host_port(options.listen).first;
    const bool loopback = host == "localhost" || host == "::1" || host == "[::1]" ||
                          host.rfind("127.", 0) == 0;
    if (!loopback && !insecure) {
      throw Error("cli", "refusing to listen on " + options.listen +
                             " without a cluster secret: anyone who can reach it could use this "
                             "worker. Set one on every machine of the cluster (MESHLM_SECRET="
                             "$(openssl rand -hex 16), or --secret S), or pass --insecure");
    }
    log::warn(
        "[worker] no cluster secret (--secret or MESHLM_SECRET): anyone who can reach {} "
        "can use this worker",
        options.listen);
  }
  if (options.threads < 1) throw Error("cli", "--threads must be at least 1");

  remote::Worker worker(options);
  if (!port_file.empty()) {
    std::string addr = worker.address();
    std::ofstream(port_file + ".tmp") << addr.substr(addr.rfind(':') + 1) << "\n";
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  discovery::Advertiser advertiser;
  if (!no_discovery) advertise(advertiser, worker.address(), options.threads, options.backend);
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

Registrar reg("worker", "serve pipeline stages for a coordinator (--listen host:port)", run_worker);

}  // namespace
}  // namespace meshlm::cli
