// meshlm: one binary, many subcommands (see command.h).
#include <cstdio>
#include <cstring>
#include <exception>

#include "command.h"
#include "core/log.h"
#include "transport/mpi_transport.h"

namespace meshlm::cli {
std::map<std::string, Command>& registry() {
  static std::map<std::string, Command> commands;
  return commands;
}
}  // namespace meshlm::cli

static void usage() {
  std::fprintf(stderr, "usage: meshlm <command> [options]   (meshlm <command> --help for its options)\n\n");
  for (auto& [name, cmd] : meshlm::cli::registry())
    std::fprintf(stderr, "  %-12s %s\n", name.c_str(), cmd.help.c_str());
}

int main(int argc, char** argv) {
  meshlm::log::set_level(std::getenv("MESHLM_LOG") ? std::getenv("MESHLM_LOG") : "info");
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("meshlm %s\n", MESHLM_VERSION_STRING);
    return 0;
  }
  auto& reg = meshlm::cli::registry();
  auto it = reg.find(argv[1]);
  if (it == reg.end()) {
    std::fprintf(stderr, "meshlm: unknown command '%s'\n\n", argv[1]);
    usage();
    return 2;
  }
  try {
    return it->second.run(argc - 1, argv + 1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "meshlm %s: error: %s\n", argv[1], e.what());
    // Under mpirun the other ranks may be waiting for this one: end the whole job.
    if (meshlm::transport::mpi_initialized() && meshlm::transport::mpi_size() > 1)
      meshlm::transport::mpi_abort(1);
    return 1;
  }
}
