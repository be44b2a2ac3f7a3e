#include "cluster/node_probe.h"

#include "transport/handshake.h"
#include "transport/tcp_transport.h"

namespace meshlm::cluster {

using namespace transport;  // the layer below: connections, frames, messages

NodeInfo probe_node(const std::string& address, const std::string& secret, int timeout_ms) {
  auto conn = tcp_connect(address, timeout_ms);
  HandshakeOptions h;
  h.secret = secret;
  h.role = "probe";
  h.name = "worker";  // handshake messages add the address
  h.timeout_ms = timeout_ms;
  HandshakeResult r = handshake_client(*conn, h);
  conn->close();
  return r.peer_info;
}

}  // namespace meshlm::cluster
