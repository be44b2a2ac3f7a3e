// What a link between the coordinator and a worker costs: round trips of frames of several sizes
// through the transport meshlm itself uses (TCP frames, the handshake's encryption when there is
// a secret), answered by the worker's ordinary loop (a Ping frame comes back as a Pong with the
// same payload). Issue 19 (where a hop's time goes) and the planner (issue 16: latency and
// bandwidth per link) read it; `meshlm ping` prints it.
//
// The worker must be free (no other coordinator): the probe connects in the coordinator role
// and loads nothing, so a worker serving someone else refuses it as busy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace meshlm::cluster {

struct LinkSample {
  uint64_t bytes = 0;  // payload of each Ping (and of its Pong)
  int rounds = 0;
  double min_us = 0, median_us = 0, p90_us = 0, mean_us = 0;  // round trip
};

struct LinkProbe {
  std::string address;
  bool encrypted = false;
  std::vector<LinkSample> samples;  // in the order of the sizes asked for
  // From the samples: the smallest size's median round trip, halved (one-way latency), and the
  // bandwidth the largest size's extra time implies: 2 x (bytes_max - bytes_min) / (median_max -
  // median_min) (both directions carry the payload). 0 when not measurable.
  double latency_us = 0;
  double bandwidth_bytes_per_s = 0;
};

// Throws Error("transport"/"handshake", ...) naming the worker when it cannot be reached, refuses
// or stops answering within timeout_ms per round trip.
LinkProbe probe_link(const std::string& address, const std::string& secret,
                     const std::vector<uint64_t>& sizes, int rounds, int timeout_ms = 10000);

}  // namespace meshlm::cluster
