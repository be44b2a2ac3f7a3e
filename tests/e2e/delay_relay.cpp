// delay_relay: a TCP relay that adds a fixed one-way latency, for kernels without `netem` (the
// C++ successor of delay_relay.py, whose own cost — ~0.2 ms late per direction and ~200 MB/s
// under load on a 2-core VM — was a visible part of what issue 19 measured).
//
//   delay_relay --listen HOST:PORT --to HOST:PORT --delay MS [--spin-us N] [--ready-file F]
//               [--exit-with-parent PID]
//
// Every connection accepted on --listen is forwarded to --to. Each chunk read in either direction
// leaves DELAY ms after it was read, in order: a reader thread per direction stamps chunks with
// their deadline and queues them, a writer thread sleeps until the head's deadline (the last
// --spin-us microseconds, default 50, spent spinning: a sleeping thread wakes late by the timer's
// slack and the scheduler's latency) and then writes every chunk due by then in one go.
// Deadlines of one direction only grow, so waiting for the head never holds a later chunk past
// its own deadline. A half-close is passed on after the data before it. --delay 0 forwards
// at once, from the reading thread. Stops on SIGTERM / SIGINT (or when --exit-with-parent's
// process is no longer its parent).
// POSIX sockets and threads only; a test and benchmark tool, not part of meshlm.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }

struct Address {
  std::string host;
  std::string port;
};

Address parse_address(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    std::fprintf(stderr, "delay_relay: want HOST:PORT, got '%s'\n", text.c_str());
    std::exit(2);
  }
  return {text.substr(0, colon), text.substr(colon + 1)};
}

void no_delay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// The first address of `a` on which `use(fd, addr)` succeeds with a fresh stream socket, or -1.
template <typename Use>
int open_socket(const Address& a, bool passive, Use use) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  if (getaddrinfo(a.host.c_str(), a.port.c_str(), &hints, &res) != 0) return -1;
  int fd = -1;
  for (addrinfo* p = res; p; p = p->ai_next) {
    fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
    if (fd < 0) continue;
    if (use(fd, p)) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

int connect_to(const Address& a) {
  int fd = open_socket(a, false, [](int s, const addrinfo* p) {
    return connect(s, p->ai_addr, p->ai_addrlen) == 0;
  });
  if (fd >= 0) no_delay(fd);
  return fd;
}

int listen_on(const Address& a) {
  return open_socket(a, true, [](int s, const addrinfo* p) {
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    return bind(s, p->ai_addr, p->ai_addrlen) == 0 && listen(s, 64) == 0;
  });
}

bool write_all(int fd, const uint8_t* data, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += w;
    n -= size_t(w);
  }
  return true;
}

struct Options {
  Address listen, to;
  std::chrono::nanoseconds delay{0};
  std::chrono::nanoseconds spin{std::chrono::microseconds(50)};
};

// One direction of one connection: from -> to, each chunk delay after it was read.
class Pump {
 public:
  Pump(int from, int to, const Options& o) : from_(from), to_(to), opt_(o) {}

  // Runs the reader here and (with a delay) the writer on its own thread; returns bytes
  // forwarded. Without a delay the reader writes each chunk itself: no thread hand-off.
  uint64_t run() {
    if (opt_.delay.count() == 0) {
      forward_now();
      return forwarded_;
    }
    std::thread writer([this] { write_side(); });
    read_side();
    writer.join();
    return forwarded_;
  }

 private:
  struct Chunk {
    Clock::time_point due;
    std::vector<uint8_t> data;  // empty: end of stream
  };

  void push(Chunk c) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(c));
    }
    cv_.notify_one();
  }

  void read_side() {
    std::vector<uint8_t> buf(size_t(1) << 18);
    for (;;) {
      ssize_t n = recv(from_, buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      const auto now = Clock::now();
      if (n <= 0) {
        push({now + opt_.delay, {}});
        return;
      }
      push({now + opt_.delay, std::vector<uint8_t>(buf.begin(), buf.begin() + n)});
    }
  }

  void forward_now() {
    std::vector<uint8_t> buf(size_t(1) << 18);
    for (;;) {
      ssize_t n = recv(from_, buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        shutdown(to_, SHUT_WR);
        return;
      }
      if (!write_all(to_, buf.data(), size_t(n))) {
        shutdown(from_, SHUT_RD);
        return;
      }
      forwarded_ += uint64_t(n);
    }
  }

  void write_side() {
    std::vector<uint8_t> out;
    for (;;) {
      Clock::time_point due;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return !queue_.empty(); });
        due = queue_.front().due;
      }
      // Sleep until shortly before the deadline, then spin to it.
      if (Clock::now() < due - opt_.spin) std::this_thread::sleep_until(due - opt_.spin);
      while (Clock::now() < due) {
      }
      bool eof = false;
      out.clear();
      {
        std::lock_guard lock(mutex_);
        const auto now = Clock::now();
        while (!queue_.empty() && queue_.front().due <= now && !eof) {
          Chunk& c = queue_.front();
          eof = c.data.empty();
          out.insert(out.end(), c.data.begin(), c.data.end());
          queue_.pop_front();
        }
      }
      if (!out.empty()) {
        if (!write_all(to_, out.data(), out.size())) {
          // The far side is gone: stop reading this direction too.
          shutdown(from_, SHUT_RD);
          return;
        }
        forwarded_ += out.size();
      }
      if (eof) {
        shutdown(to_, SHUT_WR);
        return;
      }
    }
  }

  int from_, to_;
  const Options& opt_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Chunk> queue_;
  uint64_t forwarded_ = 0;
};

void serve_connection(int client, Options opt) {
  no_delay(client);
  int server = connect_to(opt.to);
  if (server < 0) {
    std::fprintf(stderr, "[relay] cannot reach %s:%s\n", opt.to.host.c_str(), opt.to.port.c_str());
    close(client);
    return;
  }
  Pump up(client, server, opt), down(server, client, opt);
  uint64_t down_bytes = 0;
  std::thread back([&] { down_bytes = down.run(); });
  const uint64_t up_bytes = up.run();
  back.join();
  std::fprintf(stderr, "[relay] connection closed: %llu bytes forwarded, %llu bytes back\n",
               (unsigned long long)up_bytes, (unsigned long long)down_bytes);
  close(client);
  close(server);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  std::string ready_file;
  long parent = 0;
  bool have_listen = false, have_to = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "delay_relay: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--listen") {
      opt.listen = parse_address(value());
      have_listen = true;
    } else if (a == "--to") {
      opt.to = parse_address(value());
      have_to = true;
    } else if (a == "--delay") {
      opt.delay = std::chrono::nanoseconds(int64_t(std::max(0.0, std::atof(value().c_str())) * 1e6));
    } else if (a == "--spin-us") {
      opt.spin = std::chrono::microseconds(std::max(0, std::atoi(value().c_str())));
    } else if (a == "--ready-file") {
      ready_file = value();
    } else if (a == "--exit-with-parent") {
      parent = std::atol(value().c_str());
    } else {
      std::fprintf(stderr,
                   "usage: delay_relay --listen HOST:PORT --to HOST:PORT --delay MS [--spin-us N] "
                   "[--ready-file F] [--exit-with-parent PID]\n");
      return 2;
    }
  }
  if (!have_listen || !have_to) {
    std::fprintf(stderr, "delay_relay: --listen and --to are required\n");
    return 2;
  }
#if defined(__linux__)
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  // wake at the time asked for, not 50 µs later
#endif
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  int lfd = listen_on(opt.listen);
  if (lfd < 0) {
    std::fprintf(stderr, "delay_relay: cannot listen on %s:%s: %s\n", opt.listen.host.c_str(),
                 opt.listen.port.c_str(), std::strerror(errno));
    return 1;
  }
  std::fprintf(stderr, "[relay] %s:%s -> %s:%s, %g ms each way\n", opt.listen.host.c_str(),
               opt.listen.port.c_str(), opt.to.host.c_str(), opt.to.port.c_str(),
               double(opt.delay.count()) / 1e6);
  if (!ready_file.empty()) {
    const std::string tmp = ready_file + ".tmp";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
      std::fputs("ready\n", f);
      std::fclose(f);
      std::rename(tmp.c_str(), ready_file.c_str());
    }
  }
  while (!g_stop.load()) {
    if (parent > 0 && long(getppid()) != parent) break;
    pollfd p{lfd, POLLIN, 0};
    int r = poll(&p, 1, 250);
    if (r <= 0) continue;
    int c = accept(lfd, nullptr, nullptr);
    if (c < 0) continue;
    std::thread(serve_connection, c, opt).detach();  // ends with its connection (or the process)
  }
  close(lfd);
  return 0;
}
