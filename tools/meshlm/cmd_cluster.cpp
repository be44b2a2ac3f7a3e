// meshlm cluster status: the workers advertising `_meshlm._tcp` on this LAN (src/discovery).
//   meshlm cluster status [--timeout SEC] [--json]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "command.h"
#include "core/error.h"
#include "discovery/discovery.h"
#include "discovery/node_record.h"
#include "transport/frame.h"

namespace meshlm::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::string memory_text(std::optional<uint64_t> bytes) {
  if (!bytes) return "?";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", double(*bytes) / double(1ull << 30));
  return buf;
}

std::string endpoint(const discovery::Service& s) {
  bool v6 = s.address.find(':') != std::string::npos;
  return (v6 ? "[" + s.address + "]" : s.address) + ":" + std::to_string(s.port);
}

nlohmann::json worker_json(const discovery::Service& s, int64_t discovered_ms) {
  discovery::NodeRecord r = discovery::parse_node_txt(s.txt);
  auto opt = [](const auto& v) -> nlohmann::json {
    if (v) return *v;
    return nullptr;
  };
  return {{"instance", s.instance},
          {"host", s.host},
          {"address", s.address},
          {"port", s.port},
          {"id", r.id},
          {"version", r.version},
          {"proto", opt(r.proto)},
          {"compatible", r.proto == transport::kProtocolVersion},
          {"mem_available", opt(r.mem)},
          {"mem_total", opt(r.mem_total)},
          {"cores", opt(r.cores)},
          {"backend", r.backend},
          {"discovered_ms", discovered_ms},
          {"txt", s.txt}};
}

int run_status(double timeout_s, bool json) {
  if (!discovery::discovery_available())
    throw Error("cli", "this meshlm was built without LAN discovery (needs avahi-core)");
  // When each worker first appeared, for --json (time to discovery) and the tests.
  std::mutex mu;
  std::map<std::string, int64_t> first_seen_ms;
  Clock::time_point start = Clock::now();
  discovery::Browser browser([&](const discovery::BrowserEvent& e) {
    if (e.kind != discovery::BrowserEvent::Kind::kAdded) return;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    std::lock_guard lock(mu);
    first_seen_ms.emplace(e.service.instance, ms);
  });
  std::this_thread::sleep_for(std::chrono::duration<double>(timeout_s));
  std::vector<discovery::Service> services = browser.snapshot();

  std::lock_guard lock(mu);
  if (json) {
    nlohmann::json workers = nlohmann::json::array();
    for (const auto& s : services) {
      auto it = first_seen_ms.find(s.instance);
      workers.push_back(worker_json(s, it == first_seen_ms.end() ? -1 : it->second));
    }
    nlohmann::json out = {{"service", discovery::kServiceType},
                          {"browse_seconds", timeout_s},
                          {"proto", transport::kProtocolVersion},
                          {"workers", workers}};
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  if (services.empty()) {
    std::printf("no meshlm workers found on the LAN in %.1f s (%s)\n", timeout_s,
                discovery::kServiceType);
    return 0;
  }
  std::printf("%-34s %-22s %-8s %-10s %5s  %-12s %s\n", "INSTANCE", "ADDRESS", "VERSION", "MEMORY",
              "CORES", "BACKEND", "");
  for (const auto& s : services) {
    discovery::NodeRecord r = discovery::parse_node_txt(s.txt);
    std::string note;
    if (r.proto != transport::kProtocolVersion)
      note = "incompatible (protocol " + (r.proto ? std::to_string(*r.proto) : "?") +
             ", this meshlm speaks " + std::to_string(transport::kProtocolVersion) + ")";
    std::printf("%-34s %-22s %-8s %-10s %5s  %-12s %s\n", s.instance.c_str(), endpoint(s).c_str(),
                r.version.empty() ? "?" : r.version.c_str(), memory_text(r.mem).c_str(),
                r.cores ? std::to_string(*r.cores).c_str() : "?",
                r.backend.empty() ? "?" : r.backend.c_str(), note.c_str());
  }
  std::printf("%zu worker%s found in %.1f s\n", services.size(), services.size() == 1 ? "" : "s",
              timeout_s);
  return 0;
}

int run_cluster(int argc, char** argv) {
  CLI::App app{"meshlm cluster: the meshlm workers on this LAN (DNS-SD over mDNS)"};
  app.require_subcommand(1);
  double timeout_s = 3.0;
  bool json = false;
  CLI::App* status = app.add_subcommand("status", "browse the LAN and list the workers found");
  status->add_option("--timeout", timeout_s, "seconds to browse")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  status->add_flag("--json", json, "print JSON instead of a table");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return run_status(timeout_s, json);
}

Registrar reg("cluster", "workers on this LAN: cluster status [--timeout SEC] [--json]",
              run_cluster);

}  // namespace
}  // namespace meshlm::cli
