// Asks a worker what it offers (memory, cores, backend) without taking it over: a handshake in
// the "probe" role, which the worker answers with its NodeInfo even while it serves another
// coordinator, then closes.
#pragma once

#include <string>

#include "transport/messages.h"

namespace meshlm::cluster {

// Throws Error("transport"/"handshake", ...) naming the worker when it cannot be reached or
// refuses (wrong secret, wrong protocol version).
transport::NodeInfo probe_node(const std::string& address, const std::string& secret,
                               int timeout_ms = 5000);

}  // namespace meshlm::cluster
