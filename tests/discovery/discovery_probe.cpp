// A small driver of the discovery API for the multicast test (netns_test.py):
//   discovery_probe browse SECONDS
//       prints one line per Browser event: "+ MS INSTANCE ADDRESS:PORT [HOST] k=v ...", "~ ..."
//       (updated), "- ..." (removed), then "snapshot N"
//   discovery_probe advertise NAME PORT SECONDS [--listen HOST] [--stop-at S] [key=value ...]
//       publishes NAME (on the interface of HOST if given); prints "established NAME" once
//       announced (the name after any renaming); with --stop-at, calls stop() after S seconds
//       (prints "stopped") and stays alive until SECONDS
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>

#include "discovery/discovery.h"

using namespace meshlm::discovery;
using Clock = std::chrono::steady_clock;

static int browse(double seconds) {
  Clock::time_point start = Clock::now();
  Browser browser([&](const BrowserEvent& e) {
    long ms =
        long(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
    char kind = e.kind == BrowserEvent::Kind::kAdded     ? '+'
                : e.kind == BrowserEvent::Kind::kUpdated ? '~'
                                                         : '-';
    std::string txt;
    for (const auto& [key, value] : e.service.txt) txt += " " + key + "=" + value;
    std::printf("%c %ld %s %s:%u [%s]%s\n", kind, ms, e.service.instance.c_str(),
                e.service.address.c_str(), unsigned(e.service.port), e.service.host.c_str(),
                txt.c_str());
    std::fflush(stdout);
  });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  std::printf("snapshot %zu\n", browser.snapshot().size());
  return 0;
}

static int advertise(const std::string& name, int port, double seconds, int argc, char** argv) {
  TxtRecords txt;
  std::string listen;
  double stop_at = -1;
  for (int i = 0; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--listen") && i + 1 < argc) {
      listen = argv[++i];
      continue;
    }
    if (!std::strcmp(argv[i], "--stop-at") && i + 1 < argc) {
      stop_at = std::atof(argv[++i]);
      continue;
    }
    const char* eq = std::strchr(argv[i], '=');
    if (!eq) return 2;
    txt[std::string(argv[i], size_t(eq - argv[i]))] = eq + 1;
  }
  Advertiser advertiser;
  Clock::time_point begin = Clock::now();
  advertiser.start(name, uint16_t(port), txt, listen);
  bool stopped = false;
  Clock::time_point end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(seconds));
  bool reported = false;
  while (Clock::now() < end) {
    if (stop_at >= 0 && !stopped &&
        Clock::now() - begin >= std::chrono::duration<double>(stop_at)) {
      advertiser.stop();
      stopped = true;
      std::printf("stopped %s\n", advertiser.instance().c_str());
      std::fflush(stdout);
    }
    if (!reported && advertiser.established()) {
      std::printf("established %s\n", advertiser.instance().c_str());
      std::fflush(stdout);
      reported = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!reported) std::printf("not-established %s\n", advertiser.instance().c_str());
  return 0;
}

int main(int argc, char** argv) {
  try {
    if (argc == 3 && !std::strcmp(argv[1], "browse")) return browse(std::atof(argv[2]));
    if (argc >= 5 && !std::strcmp(argv[1], "advertise"))
      return advertise(argv[2], std::atoi(argv[3]), std::atof(argv[4]), argc - 5, argv + 5);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "discovery_probe: %s\n", e.what());
    return 1;
  }
  std::fprintf(
      stderr,
      "usage: discovery_probe browse SECONDS | advertise NAME PORT SECONDS [--listen HOST] "
      "[--stop-at S] [k=v...]\n");
  return 2;
}
