#include "core/trace.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#if defined(_WIN32)
#include <process.h>
#define MESHLM_GETPID _getpid
#else
#include <unistd.h>
#define MESHLM_GETPID getpid
#endif

namespace meshlm::trace {
namespace {

struct Sink {
  std::FILE* file = nullptr;
  std::mutex mutex;
  long pid = 0;
  Sink() {
    const char* path = std::getenv("MESHLM_TRACE");
    if (path == nullptr || *path == '\0') return;
    file = std::fopen(path, "a");  // append: several processes share one file
    pid = long(MESHLM_GETPID());
  }
};

Sink& sink() {
  static Sink s;
  return s;
}

}  // namespace

bool enabled() {
  static const bool on = sink().file != nullptr;
  return on;
}

void event_slow(const char* event, uint64_t id) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
  Sink& s = sink();
  std::lock_guard lock(s.mutex);
  // One write per line (a line buffer flushed at once), so lines of processes appending to the
  // same file do not interleave.
  char line[128];
  int n = std::snprintf(line, sizeof line, "%lld %ld %s %llu\n", static_cast<long long>(ns), s.pid,
                        event, static_cast<unsigned long long>(id));
  if (n > 0) {
    std::fwrite(line, 1, size_t(n), s.file);
    std::fflush(s.file);
  }
}

}  // namespace meshlm::trace
