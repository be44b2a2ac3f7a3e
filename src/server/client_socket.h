// Noticing that an HTTP client went away while its request is still being generated, so the
// request can be cancelled and its KV cache freed at once. cpp-httplib 0.11 does not expose the
// connection's socket to handlers, so it is found by its addresses among this process's fds (listed with /proc on Linux,
// proc_pidinfo on macOS).
#pragma once

#include <string>

namespace meshlm::server {

class ClientSocket {
 public:
  // Finds the connected socket whose peer is remote_addr:remote_port (and local end
  // local_addr:local_port). Never throws; an unknown socket reports "connected".
  ClientSocket(const std::string& remote_addr, int remote_port, const std::string& local_addr,
               int local_port);
  // True once the peer has closed or reset the connection.
  bool closed() const;

 private:
  int fd_ = -1;
};

}  // namespace meshlm::server
