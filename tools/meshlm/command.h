// Subcommands of the `meshlm` CLI register themselves here; each lives in its own cmd_*.cpp:
//   static meshlm::cli::Registrar reg("tokenize", "text on stdin -> JSON ids", run_tokenize);
// run(argc, argv) gets argv[0] == the subcommand name and returns the exit status.
#pragma once

#include <functional>
#include <map>
#include <string>

namespace meshlm::cli {

struct Command {
  std::string help;
  std::function<int(int, char**)> run;
};

std::map<std::string, Command>& registry();

struct Registrar {
  Registrar(const std::string& name, const std::string& help, std::function<int(int, char**)> run) {
    registry()[name] = Command{help, std::move(run)};
  }
};

}  // namespace meshlm::cli
