#include "cluster/link_probe.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "core/error.h"
#include "core/hex.h"
#include "transport/handshake.h"
#include "transport/tcp_transport.h"

namespace meshlm::cluster {

using namespace transport;  // the layer below: connections, frames, messages

namespace {

LinkSample summarize(uint64_t bytes, std::vector<double> us) {
  LinkSample s;
  s.bytes = bytes;
  s.rounds = int(us.size());
  if (us.empty()) return s;
  std::sort(us.begin(), us.end());
  s.min_us = us.front();
  s.median_us = us.size() % 2 ? us[us.size() / 2] : 0.5 * (us[us.size() / 2 - 1] + us[us.size() / 2]);
  s.p90_us = us[std::min(us.size() - 1, size_t(0.9 * double(us.size())))];
  s.mean_us = std::accumulate(us.begin(), us.end(), 0.0) / double(us.size());
  return s;
}

}  // namespace

LinkProbe probe_link(const std::string& address, const std::string& secret,
                     const std::vector<uint64_t>& sizes, int rounds, int timeout_ms) {
  if (rounds < 1) throw Error("ping", "rounds must be at least 1");
  for (uint64_t n : sizes)
    if (n > (uint64_t{1} << 28)) throw Error("ping", "payloads above 256 MiB are not probed");
  auto conn = tcp_connect(address, timeout_ms);
  HandshakeOptions h;
  h.secret = secret;
  h.role = "coordinator";
  h.name = "worker";
  h.client_id = random_hex(16);
  h.timeout_ms = timeout_ms;
  HandshakeResult hs = handshake_client(*conn, h);
  LinkProbe probe;
  probe.address = address;
  probe.encrypted = hs.encrypted;
  using Clock = std::chrono::steady_clock;
  Frame reply;
  for (uint64_t n : sizes) {
    std::vector<uint8_t> payload(n);
    for (uint64_t i = 0; i < n; ++i) payload[i] = uint8_t(i * 131 + 7);
    std::vector<double> us;
    // One round first that is not counted: buffers grow, pages fault in.
    for (int r = -1; r < rounds; ++r) {
      const auto t0 = Clock::now();
      conn->send(FrameType::Ping, payload);
      for (;;) {  // a heartbeat Pong (empty) may come in between
        recv_checked_into(*conn, reply, timeout_ms);
        if (reply.type() == FrameType::Error)
          throw Error("ping", address + " answered with an error: " +
                                  std::string(reply.payload.begin(), reply.payload.end()));
        if (reply.type() != FrameType::Pong)
          throw Error("protocol", "expected a pong from " + address + ", got " +
                                      frame_type_name(reply.header.type));
        if (reply.payload.size() == n) break;
      }
      const double took = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      if (reply.payload != payload)
        throw Error("ping", address + " echoed a different payload of " + std::to_string(n) +
                                " bytes");
      if (r >= 0) us.push_back(took);
    }
    probe.samples.push_back(summarize(n, std::move(us)));
  }
  conn->send(FrameType::Shutdown);
  conn->close();
  if (!probe.samples.empty()) {
    auto by_size = probe.samples;
    std::sort(by_size.begin(), by_size.end(),
              [](const LinkSample& a, const LinkSample& b) { return a.bytes < b.bytes; });
    const LinkSample &lo = by_size.front(), &hi = by_size.back();
    probe.latency_us = lo.median_us / 2;
    if (hi.bytes > lo.bytes && hi.median_us > lo.median_us)
      probe.bandwidth_bytes_per_s =
          2.0 * double(hi.bytes - lo.bytes) / ((hi.median_us - lo.median_us) * 1e-6);
  }
  return probe;
}

}  // namespace meshlm::cluster
