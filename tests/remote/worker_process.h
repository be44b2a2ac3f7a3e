// Test helpers shared by the multi-process pipeline tests (pipeline_test.cpp,
// tp_pipeline_test.cpp): run a command, and a `meshlm worker` child process on 127.0.0.1 that
// reports the port it bound. Needs MESHLM_BIN and MESHLM_TEST_DIR (compile definitions) and
// the shared secret the tests use.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace meshlm::test {

inline const std::string kWorkerSecret = "test-secret";

inline int run_command(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A `meshlm worker` child process on 127.0.0.1.
class WorkerProcess {
 public:
  explicit WorkerProcess(uint16_t port = 0, std::vector<std::string> extra = {}) {
    static int counter = 0;
    port_file_ = std::filesystem::path(MESHLM_TEST_DIR) /
                 ("worker_port_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove(port_file_);
    std::vector<std::string> args = {MESHLM_BIN, "worker", "--listen",
                                     "127.0.0.1:" + std::to_string(port), "--secret", kWorkerSecret,
                                     "--threads", "1", "--port-file", port_file_.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
      throw std::runtime_error("cannot start meshlm worker");
    }
    // Up to 60 s for the process to start and listen (a bound, not a timing assertion).
    for (int i = 0; i < 3000 && !std::filesystem::exists(port_file_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::ifstream in(port_file_);
    int p = 0;
    if (!(in >> p)) throw std::runtime_error("meshlm worker did not report its port");
    port_ = static_cast<uint16_t>(p);
  }
  ~WorkerProcess() {
    signal(SIGCONT);
    kill(SIGTERM);
  }
  // Sends sig without waiting for the process to end (SIGSTOP / SIGCONT).
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  void kill(int sig) {
    if (pid_ > 0) {
      ::kill(pid_, sig);
      int status;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    std::filesystem::remove(port_file_);
  }
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::filesystem::path port_file_;
};

}  // namespace meshlm::test
