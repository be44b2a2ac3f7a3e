// A synthetic model written once by `meshlm synth`, safely when several test processes want the
// same folder at the same time (ctest -j runs each gtest in its own process): each process writes
// its own DIR.tmp-<pid> and renames it into place; the first rename wins and the others discard
// theirs. DIR/.complete marks a whole model, so a reader never sees one half written.
#pragma once

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

extern char** environ;

namespace meshlm::test {

// "" when DIR holds the model (made now or before), else why not.
inline std::string synth_once(const std::string& meshlm, const std::filesystem::path& dir,
                              const std::vector<std::string>& synth_args) {
  namespace fs = std::filesystem;
  if (fs::exists(dir / ".complete")) return "";
  const fs::path tmp = dir.string() + ".tmp-" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  std::vector<std::string> args = {meshlm, "synth", "--out", tmp.string()};
  args.insert(args.end(), synth_args.begin(), synth_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0)
    return "cannot start " + meshlm;
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "meshlm synth failed";
  std::ofstream(tmp / ".complete").put('\n');
  if (fs::exists(dir) && !fs::exists(dir / ".complete")) fs::remove_all(dir, ec);  // a leftover
  fs::rename(tmp, dir, ec);
  if (ec) fs::remove_all(tmp, ec);  // another process put its copy there first
  return fs::exists(dir / ".complete") ? "" : "no complete model in " + dir.string();
}

}  // namespace meshlm::test
