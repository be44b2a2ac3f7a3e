// `meshlm ping HOST:PORT`: round trips of frames of several sizes to a free worker, through the
// transport a pipeline uses (cluster/link_probe.h): what one hop of activations costs on that
// link, and the latency and bandwidth it implies.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cluster/link_probe.h"
#include "command.h"
#include "core/byte_count.h"

namespace meshlm::cli {
namespace {

int run_ping(int argc, char** argv) {
  CLI::App app("Round trips of 64 B .. 1 MiB frames to a free worker (what a hop costs on that link)",
               "meshlm ping");
  std::string address, secret;
  std::vector<uint64_t> sizes = {64, 4096, 65536, 1048576};
  int rounds = 100;
  bool json = false;
  app.add_option("address", address, "the worker, host:port")->required();
  app.add_option("--sizes", sizes, "payload bytes of each series (default 64 4096 65536 1048576)");
  app.add_option("--rounds", rounds, "round trips per size (100)")->check(CLI::Range(1, 100000));
  app.add_option("--secret", secret, "shared cluster secret (default: $MESHLM_SECRET)");
  app.add_flag("--json", json, "print JSON");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (secret.empty()) {
    if (const char* s = std::getenv("MESHLM_SECRET")) secret = s;
  }
  const cluster::LinkProbe p = cluster::probe_link(address, secret, sizes, rounds);
  if (json) {
    nlohmann::json j = {{"address", p.address},
                        {"encrypted", p.encrypted},
                        {"latency_us", p.latency_us},
                        {"bandwidth_bytes_per_s", p.bandwidth_bytes_per_s},
                        {"samples", nlohmann::json::array()}};
    for (const auto& s : p.samples)
      j["samples"].push_back({{"bytes", s.bytes}, {"rounds", s.rounds}, {"min_us", s.min_us},
                              {"median_us", s.median_us}, {"p90_us", s.p90_us},
                              {"mean_us", s.mean_us}});
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%s (%s), %d round trips per size\n", p.address.c_str(),
              p.encrypted ? "encrypted" : "plain", rounds);
  std::printf("| payload | min µs | median µs | p90 µs | mean µs |\n|---|---|---|---|---|\n");
  for (const auto& s : p.samples)
    std::printf("| %s | %.1f | %.1f | %.1f | %.1f |\n", format_bytes(double(s.bytes)).c_str(),
                s.min_us, s.median_us, s.p90_us, s.mean_us);
  std::printf("one-way latency ~%.1f µs (half the smallest median)", p.latency_us);
  if (p.bandwidth_bytes_per_s > 0)
    std::printf(", bandwidth ~%.0f MB/s (from the largest size's extra time)",
                p.bandwidth_bytes_per_s / 1e6);
  std::printf("\n");
  return 0;
}

Registrar reg("ping", "round trips of 64 B .. 1 MiB frames to a free worker (link cost)", run_ping);

}  // namespace
}  // namespace meshlm::cli
