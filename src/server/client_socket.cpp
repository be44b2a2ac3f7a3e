#include "server/client_socket.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__APPLE__)
#include <libproc.h>
#include <sys/proc_info.h>
#endif

namespace meshlm::server {
namespace {

// "1.2.3.4" / "::1" and port of a socket address.
bool address_of(const sockaddr_storage& ss, std::string& host, int& port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    port = ntohs(a->sin6_port);
  } else {
    return false;
  }
  host = buf;
  return true;
}

// This process's open file descriptors: /proc/self/fd on Linux, proc_pidinfo on macOS, and
// elsewhere every number below a bound.
std::vector<int> open_fds() {
  std::vector<int> fds;
#if defined(__APPLE__)
  int bytes = proc_pidinfo(getpid(), PROC_PIDLISTFDS, 0, nullptr, 0);
  if (bytes > 0) {
    std::vector<proc_fdinfo> info(size_t(bytes) / sizeof(proc_fdinfo) + 16);
    bytes = proc_pidinfo(getpid(), PROC_PIDLISTFDS, 0, info.data(),
                         int(info.size() * sizeof(proc_fdinfo)));
    for (int i = 0; bytes > 0 && i < int(size_t(bytes) / sizeof(proc_fdinfo)); ++i)
      if (info[size_t(i)].proc_fdtype == PROX_FDTYPE_SOCKET) fds.push_back(info[size_t(i)].proc_fd);
    return fds;
  }
#else
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* entry = readdir(dir))
      if (entry->d_name[0] != '.') fds.push_back(std::atoi(entry->d_name));
    closedir(dir);
    return fds;
  }
#endif
  for (int fd = 0; fd < 4096; ++fd) fds.push_back(fd);
  return fds;
}

}  // namespace

ClientSocket::ClientSocket(const std::string& remote_addr, int remote_port,
                           const std::string& local_addr, int local_port) {
  for (int fd : open_fds()) {
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage peer{}, self{};
    socklen_t pl = sizeof peer, sl = sizeof self;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&self), &sl) != 0) continue;
    std::string ph, sh;
    int pp = 0, sp = 0;
    if (!address_of(peer, ph, pp) || !address_of(self, sh, sp)) continue;
    if (ph == remote_addr && pp == remote_port && sp == local_port &&
        (local_addr.empty() || sh == local_addr)) {
      fd_ = fd;
      break;
    }
  }
}

bool ClientSocket::closed() const {
  if (fd_ < 0) return false;
  pollfd p{};
  p.fd = fd_;
#if defined(POLLRDHUP)
  constexpr short kPeerClosed = POLLRDHUP;  // Linux: the peer's FIN, even with data unread
#else
  constexpr short kPeerClosed = 0;  // elsewhere the MSG_PEEK below sees end of stream
#endif
  p.events = POLLIN | kPeerClosed;
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (kPeerClosed | POLLHUP | POLLERR | POLLNVAL)) return true;
  if (p.revents & POLLIN) {
    // Readable: either the next pipelined request, or end of stream.
    char c;
    ssize_t n = recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0;
  }
  return false;
}

}  // namespace meshlm::server
