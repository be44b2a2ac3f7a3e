// Collectives (collective.h): 1-4 ranks as threads over loopback TCP (plain and encrypted),
// all_reduce_sum bit-identical on every rank and equal to a scalar sum in rank order, all_gather
// with uneven (and empty) contributions, repeated runs identical, and every failure (a peer
// that closes, dies mid-frame, sends garbage or the wrong size, or stays silent) an Error on the
// ranks that see it. Built a second time with MESHLM_COLLECTIVE_MPI_TEST as
// transport_collective_mpi (run under `mpirun -np 3`): the same collectives over MPI against the
// same in-test reference, so TCP and MPI results have the same bits.
#include <gtest/gtest.h>

#include <bit>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "../common/splitmix.h"
#include "transport/collective.h"
#include "transport/handshake.h"
#include "transport/messages.h"
#include "transport/mpi_transport.h"
#include "transport/tcp_transport.h"

namespace meshlm::transport {
namespace {

// ---- deterministic inputs and the reference ----------------------------------------------

uint64_t mix(uint64_t x) { return test::splitmix64(x); }

// Element i of rank r's input: random sign and mantissa, exponent in [-20, 20], so that the
// order of a sum changes its rounding.
float value(int rank, size_t i, uint64_t salt = 0) {
  uint64_t h = mix((uint64_t(rank) << 40) ^ uint64_t(i) ^ (salt << 56));
  uint32_t mant = static_cast<uint32_t>(h & 0x7fffff);
  uint32_t exp = static_cast<uint32_t>((h >> 23) % 41) + 127 - 20;
  uint32_t sign = static_cast<uint32_t>((h >> 40) & 1);
  return std::bit_cast<float>((sign << 31) | (exp << 23) | mant);
}

std::vector<float> input(int rank, size_t n, uint64_t salt = 0) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = value(rank, i, salt);
  return v;
}

// The contract: ((x_0 + x_1) + x_2) + ... in f32.
std::vector<float> reference_sum(int ranks, size_t n, uint64_t salt = 0) {
  std::vector<float> sum = input(0, n, salt);
  for (int r = 1; r < ranks; ++r) {
    for (size_t i = 0; i < n; ++i) sum[i] += value(r, i, salt);
  }
  return sum;
}

// Rank r's all_gather contribution: sizes from this table (a zero among them), cycling.
size_t gather_count(int rank, size_t round = 0) {
  static const size_t kCounts[] = {5, 0, 13, 1, 2048, 7};
  return kCounts[(rank + round) % (sizeof(kCounts) / sizeof(kCounts[0]))];
}

std::vector<float> gather_reference(int ranks, size_t round = 0) {
  std::vector<float> all;
  for (int r = 0; r < ranks; ++r) {
    auto part = input(r, gather_count(r, round), 100 + round);
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

// "" when a and b have the same bits, else where they first differ.
std::string bit_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) {
    return "sizes " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) {
      return "element " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " +
             std::to_string(b[i]);
    }
  }
  return "";
}

uint64_t checksum(const std::vector<float>& v) {  // FNV-1a over the bits, for the logs
  uint64_t h = 0xcbf29ce484222325ull;
  for (float f : v) {
    uint32_t b = std::bit_cast<uint32_t>(f);
    for (int k = 0; k < 4; ++k) h = (h ^ ((b >> (8 * k)) & 0xff)) * 0x100000001b3ull;
  }
  return h;
}

// The checks every transport runs on a group: all_reduce_sum against the reference for several
// sizes (one of 1.2 MB, past what socket buffers hold), then all_gather with uneven sizes.
// Returns the all_reduce results for comparison between runs.
std::vector<std::vector<float>> run_standard_checks(Group& g) {
  std::vector<std::vector<float>> results;
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{1000}, size_t{300000}}) {
    std::vector<float> data = input(g.rank(), n);
    g.all_reduce_sum(data.data(), data.size());
    EXPECT_EQ(bit_difference(data, reference_sum(g.size(), n)), "")
        << "rank " << g.rank() << " of " << g.size() << ", n = " << n;
    results.push_back(std::move(data));
  }
  for (size_t round = 0; round < 3; ++round) {
    std::vector<size_t> counts;
    auto got = g.all_gather(input(g.rank(), gather_count(g.rank(), round), 100 + round), &counts);
    EXPECT_EQ(bit_difference(got, gather_reference(g.size(), round)), "")
        << "rank " << g.rank() << " of " << g.size() << ", round " << round;
    EXPECT_EQ(counts.size(), static_cast<size_t>(g.size()));
    for (int r = 0; r < g.size() && r < static_cast<int>(counts.size()); ++r) {
      EXPECT_EQ(counts[r], gather_count(r, round)) << "rank " << g.rank() << ", from rank " << r;
    }
    results.push_back(std::move(got));
  }
  // gather: all_gather's result on the root alone (each rank in turn), the others get nothing;
  // then a large contribution (past the inline limit: the sending thread), and an all_reduce
  // to show the ranks are still in step.
  for (size_t round = 0; round < 3; ++round) {
    const int root = int(round) % g.size();
    std::vector<size_t> counts;
    auto got = g.gather(input(g.rank(), gather_count(g.rank(), round), 100 + round), root, &counts);
    if (g.rank() == root) {
      EXPECT_EQ(bit_difference(got, gather_reference(g.size(), round)), "")
          << "root " << root << " of " << g.size() << ", round " << round;
      EXPECT_EQ(counts.size(), static_cast<size_t>(g.size()));
    } else {
      EXPECT_TRUE(got.empty()) << "rank " << g.rank() << " is not the root";
      EXPECT_TRUE(counts.empty());
    }
  }
  auto big = g.gather(input(g.rank(), 300000, 7), 0);
  EXPECT_EQ(big.size(), g.rank() == 0 ? size_t(300000) * size_t(g.size()) : size_t{0});
  std::vector<float> again = input(g.rank(), 7);
  g.all_reduce_sum(again.data(), again.size());
  EXPECT_EQ(bit_difference(again, reference_sum(g.size(), 7)), "");
  return results;
}

#ifndef MESHLM_COLLECTIVE_MPI_TEST

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

// ---- loopback TCP meshes -------------------------------------------------------------------

using Links = std::vector<std::vector<std::unique_ptr<TcpConnection>>>;  // [rank][peer]

// A full mesh of n ranks over 127.0.0.1: for every pair i < j, j connects to i's listener.
// With a secret, every link runs the handshake (i serves, j connects) and is encrypted.
Links tcp_mesh(int n, const std::string& secret = "") {
  Links links(n);
  for (auto& l : links) l.resize(n);
  std::vector<std::unique_ptr<TcpListener>> listeners;
  for (int i = 0; i < n; ++i) listeners.push_back(std::make_unique<TcpListener>("127.0.0.1:0"));
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      links[j][i] = tcp_connect(listeners[i]->address(), 10000);
      links[i][j] = listeners[i]->accept(10000);
      if (!links[i][j]) throw std::runtime_error("tcp_mesh: no connection accepted");
      if (!secret.empty()) {
        HandshakeOptions h;
        h.secret = secret;
        h.timeout_ms = 10000;
        auto server = std::async(std::launch::async, [&] { handshake_server(*links[i][j], h); });
        auto client = handshake_client(*links[j][i], h);
        server.get();
        if (!client.encrypted) throw std::runtime_error("tcp_mesh: link not encrypted");
      }
    }
  }
  return links;
}

std::vector<std::unique_ptr<Connection>> as_connections(
    std::vector<std::unique_ptr<TcpConnection>> v) {
  std::vector<std::unique_ptr<Connection>> out;
  for (auto& c : v) out.push_back(std::move(c));
  return out;
}

GroupOptions guard() {
  GroupOptions o;
  o.timeout_ms = 30000;  // only a failure guard: no test waits for it to pass
  return o;
}

// Runs fn(group) for every rank on its own thread; returns each rank's error ("" when none).
std::vector<std::string> run_ranks(Links links, const std::function<void(Group&)>& fn,
                                   GroupOptions options = guard()) {
  const int n = static_cast<int>(links.size());
  std::vector<std::future<std::string>> ranks;
  for (int r = 0; r < n; ++r) {
    ranks.push_back(std::async(std::launch::async, [&, r, conns = std::move(links[r])]() mutable {
      try {
        Group g(r, as_connections(std::move(conns)), options);
        fn(g);
        return std::string();
      } catch (const std::exception& e) {
        return std::string(e.what()).empty() ? std::string("(empty error)") : e.what();
      }
    }));
  }
  std::vector<std::string> errors;
  for (auto& f : ranks) errors.push_back(f.get());
  return errors;
}

void expect_no_errors(const std::vector<std::string>& errors) {
  for (size_t r = 0; r < errors.size(); ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

TEST(Collective, AllReduceAndAllGatherOneToFourRanks) {
  for (int n = 1; n <= 4; ++n) {
    SCOPED_TRACE("ranks " + std::to_string(n));
    std::vector<std::vector<std::vector<float>>> results(n);
    expect_no_errors(run_ranks(tcp_mesh(n), [&](Group& g) {
      ASSERT_EQ(g.size(), n);
      results[g.rank()] = run_standard_checks(g);
    }));
    for (int r = 1; r < n; ++r) {
      ASSERT_EQ(results[r].size(), results[0].size());
      for (size_t k = 0; k < results[0].size(); ++k) {
        EXPECT_EQ(bit_difference(results[r][k], results[0][k]), "") << "rank " << r << " #" << k;
      }
    }
    if (n == 3) {  // the same line is printed by transport_collective_mpi (3 ranks)
      std::printf("tcp 3 ranks: all_reduce_sum n=1000 checksum %016" PRIx64 "\n",
                  checksum(results[0][3]));
    }
  }
}

// The reference is sensitive to the order of the sum, so matching it means summing in rank
// order (with 2 ranks a + b == b + a, so from 3 on).
TEST(Collective, ReferenceDependsOnSumOrder) {
  for (int n = 3; n <= 4; ++n) {
    auto ordered = reference_sum(n, 1000);
    std::vector<float> reversed = input(n - 1, 1000);
    for (int r = n - 2; r >= 0; --r) {
      for (size_t i = 0; i < reversed.size(); ++i) reversed[i] += value(r, i);
    }
    EXPECT_NE(bit_difference(ordered, reversed), "") << n << " ranks";
  }
}

TEST(Collective, RepeatedRunsAreIdentical) {
  std::vector<std::vector<float>> first;
  for (int run = 0; run < 3; ++run) {
    std::vector<std::vector<std::vector<float>>> results(4);
    expect_no_errors(run_ranks(tcp_mesh(4), [&](Group& g) {
      // Several calls on one group, then the standard checks.
      for (int k = 0; k < 3; ++k) {
        auto data = input(g.rank(), 513, 7);
        g.all_reduce_sum(data.data(), data.size());
        results[g.rank()].push_back(std::move(data));
      }
      for (auto& v : run_standard_checks(g)) results[g.rank()].push_back(std::move(v));
    }));
    for (int r = 0; r < 4; ++r) {
      ASSERT_EQ(results[r].size(), results[0].size());
      for (size_t k = 0; k < results[r].size(); ++k) {
        EXPECT_EQ(bit_difference(results[r][k], results[0][k]), "") << "run " << run << " rank " << r;
      }
    }
    if (run == 0) {
      first = results[0];
    } else {
      ASSERT_EQ(first.size(), results[0].size());
      for (size_t k = 0; k < first.size(); ++k) {
        EXPECT_EQ(bit_difference(results[0][k], first[k]), "") << "run " << run << " #" << k;
      }
    }
  }
}

TEST(Collective, EncryptedLinks) {
  expect_no_errors(run_ranks(tcp_mesh(3, "collective-secret"), [](Group& g) {
    run_standard_checks(g);
  }));
}

// Small frames go out on the caller's thread, large ones through the sending thread (the
// standard checks have both); with inline_small_sends off, every one goes through the thread.
TEST(Collective, EverySendThroughTheSendingThread) {
  GroupOptions o = guard();
  o.inline_small_sends = false;
  expect_no_errors(run_ranks(tcp_mesh(3), [](Group& g) { run_standard_checks(g); }, o));
}

// What makes the inline path safe: a TCP link buffers two activation rows of hidden 8192 whole.
TEST(Collective, TcpLinksBufferSmallFramesWhole) {
  Links links = tcp_mesh(2);
  size_t limit = links[0][1]->reserve_send_buffer(size_t{1} << 20);
  EXPECT_GE(limit, 8192 * sizeof(float) + kCollectiveHeadSize);
  // Two such frames are taken while the peer reads nothing (a guard closes the link if the
  // sends hang, so that a failure is a failure and not a hung test).
  std::vector<uint8_t> frame(limit, 0x5a);
  auto sending = std::async(std::launch::async, [&] {
    links[0][1]->send(FrameType::Collective, frame);
    links[0][1]->send(FrameType::Collective, frame);
  });
  if (sending.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "two frames of " << limit << " bytes did not fit in the send buffer";
    links[0][1]->close();
  }
  sending.get();
  for (int k = 0; k < 2; ++k) {
    Frame f = links[1][0]->recv(10000);
    EXPECT_EQ(f.payload.size(), frame.size());
  }
}

TEST(Collective, WithoutTimeout) {
  GroupOptions forever;
  forever.timeout_ms = -1;
  expect_no_errors(run_ranks(tcp_mesh(3), [](Group& g) { run_standard_checks(g); }, forever));
}

TEST(Collective, SendRecv) {
  const int n = 3;
  expect_no_errors(run_ranks(tcp_mesh(n), [](Group& g) {
    // A ring: every rank sends to the next and receives from the previous (small messages,
    // taken by the socket buffers, so sending first cannot block).
    const int next = (g.rank() + 1) % g.size(), prev = (g.rank() + g.size() - 1) % g.size();
    for (int k = 0; k < 3; ++k) {
      std::vector<uint8_t> msg(static_cast<size_t>(10 * g.rank() + k), uint8_t(g.rank() * 16 + k));
      g.send(next, msg);
      std::vector<uint8_t> want(static_cast<size_t>(10 * prev + k), uint8_t(prev * 16 + k));
      if (k == 1) {
        std::vector<uint8_t> got(want.size());
        g.recv(prev, got);
        EXPECT_EQ(got, want);
      } else {
        EXPECT_EQ(g.recv(prev), want);
      }
    }
    // A collective after point-to-point traffic on the same connections.
    auto data = input(g.rank(), 100);
    g.all_reduce_sum(data.data(), data.size());
    EXPECT_EQ(bit_difference(data, reference_sum(g.size(), 100)), "");
  }));
}

TEST(Collective, RecvOfTheWrongSizeIsAnError) {
  auto errors = run_ranks(tcp_mesh(2), [](Group& g) {
    if (g.rank() == 0) {
      std::vector<uint8_t> five(5, 1);
      g.send(1, five);
    } else {
      std::vector<uint8_t> four(4);
      g.recv(0, four);
    }
  });
  EXPECT_EQ(errors[0], "");
  EXPECT_TRUE(contains(errors[1], "rank 0 sent 5 bytes, this rank expects 4")) << errors[1];
}

TEST(Collective, BadArguments) {
  expect_no_errors(run_ranks(tcp_mesh(2), [](Group& g) {
    std::vector<uint8_t> b(1);
    EXPECT_THROW(g.send(g.rank(), b), Error);
    EXPECT_THROW(g.send(2, b), Error);
    EXPECT_THROW(g.recv(-1), Error);
    EXPECT_FALSE(g.broken());  // argument errors do not break the group
  }));
  std::vector<std::unique_ptr<Connection>> none(2);
  EXPECT_THROW(Group(0, std::move(none)), Error);  // no connection to rank 1
}

// A rank that fails closes its connections, so a peer may see that close before the data
// that would have told it the cause: every rank fails, and the first to fail (at least one)
// names the cause.
void expect_all_fail_one_names(const std::vector<std::string>& errors,
                               const std::vector<std::string>& causes) {
  int naming = 0;
  for (size_t r = 0; r < errors.size(); ++r) {
    EXPECT_TRUE(contains(errors[r], "[collective] rank " + std::to_string(r) + ": ")) << errors[r];
    for (const auto& cause : causes) naming += contains(errors[r], cause) ? 1 : 0;
  }
  EXPECT_GE(naming, 1) << errors[0] << "\n" << errors[1];
}

TEST(Collective, SizeMismatchIsAnErrorOnEveryRank) {
  auto errors = run_ranks(tcp_mesh(2), [](Group& g) {
    std::vector<float> data(g.rank() == 0 ? 4 : 5, 1.0f);
    g.all_reduce_sum(data.data(), data.size());
  });
  expect_all_fail_one_names(errors, {"rank 1 sent 5 floats, this rank expects 4",
                                     "rank 0 sent 4 floats, this rank expects 5"});
}

TEST(Collective, RanksOutOfStepIsAnError) {
  auto errors = run_ranks(tcp_mesh(2), [](Group& g) {
    std::vector<float> data(4, 1.0f);
    if (g.rank() == 0) {
      g.all_reduce_sum(data.data(), data.size());
    } else {
      g.all_gather(data);
    }
  });
  expect_all_fail_one_names(errors, {"rank 1 is out of step: it sent all_gather #0",
                                     "rank 0 is out of step: it sent all_reduce_sum #0"});
}

// Rank 2 takes part in one all_reduce_sum, then closes its connections: the next collective is
// an Error on ranks 0 and 1, and their groups stay broken.
TEST(Collective, PeerClosingIsAnErrorOnEveryOtherRank) {
  std::vector<std::string> second(3), third(3);
  auto errors = run_ranks(tcp_mesh(3), [&](Group& g) {
    auto data = input(g.rank(), 64);
    g.all_reduce_sum(data.data(), data.size());
    EXPECT_EQ(bit_difference(data, reference_sum(3, 64)), "");
    if (g.rank() == 2) return;  // the Group's destructor closes its connections
    try {
      g.all_reduce_sum(data.data(), data.size());
    } catch (const Error& e) {
      second[g.rank()] = e.what();
    }
    EXPECT_TRUE(g.broken());
    try {
      g.all_gather(data);
    } catch (const Error& e) {
      third[g.rank()] = e.what();
    }
  });
  expect_no_errors(errors);
  // Both fail; the first to fail names rank 2 (the other may see rank 1 or 0 close first).
  expect_all_fail_one_names({second[0], second[1]}, {"all_reduce_sum #1 (64 floats): rank 2"});
  for (int r = 0; r < 2; ++r) EXPECT_TRUE(contains(third[r], "broken")) << third[r];
}

// ---- a hand-driven peer: rank 1 is the test, writing frames itself ------------------------

// Rank 0 runs a real Group and calls all_reduce_sum on 4 floats; the test plays rank 1 with
// `act` on its raw connection. Returns rank 0's error.
std::string against_fake_peer(const std::function<void(TcpConnection&)>& act,
                              int timeout_ms = 30000) {
  Links links = tcp_mesh(2);
  std::unique_ptr<TcpConnection> fake = std::move(links[1][0]);
  GroupOptions o;
  o.timeout_ms = timeout_ms;
  auto rank0 = std::async(std::launch::async, [&, conns = std::move(links[0])]() mutable {
    try {
      Group g(0, as_connections(std::move(conns)), o);
      std::vector<float> data(4, 1.0f);
      g.all_reduce_sum(data.data(), data.size());
      return std::string();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
  });
  act(*fake);
  std::string error = rank0.get();
  fake->close();
  return error;
}

void send_collective(TcpConnection& c, CollectiveHead head, size_t floats) {
  auto bytes = encode_collective_head(head);
  std::vector<float> data(floats, 2.0f);
  std::span<const uint8_t> pieces[2] = {
      bytes, {reinterpret_cast<const uint8_t*>(data.data()), data.size() * sizeof(float)}};
  try {
    c.send_pieces(FrameType::Collective, pieces);
  } catch (const ConnectionError&) {
    // Rank 0 may refuse the frame from its header and close before all of it is sent.
  }
}

TEST(CollectiveFakePeer, WellFormedMessageWorks) {
  EXPECT_EQ(against_fake_peer([](TcpConnection& c) {
              send_collective(c, {CollectiveOp::AllReduceSum, 1, 0, 4}, 4);
            }),
            "");
}

TEST(CollectiveFakePeer, WrongSizeWrongStepWrongRankWrongType) {
  struct Case {
    std::function<void(TcpConnection&)> act;
    std::string expect;
  };
  const Case cases[] = {
      {[](TcpConnection& c) { send_collective(c, {CollectiveOp::AllReduceSum, 1, 0, 5}, 5); },
       "rank 1 sent 5 floats, this rank expects 4"},
      {[](TcpConnection& c) { send_collective(c, {CollectiveOp::AllReduceSum, 1, 0, 100000}, 100000); },
       "exceeds the limit"},
      {[](TcpConnection& c) { send_collective(c, {CollectiveOp::AllReduceSum, 1, 0, 4}, 3); },
       "announces 4 elements of 4 bytes but carries 12 bytes"},
      {[](TcpConnection& c) { send_collective(c, {CollectiveOp::AllReduceSum, 1, 9, 4}, 4); },
       "out of step: it sent all_reduce_sum #9"},
      {[](TcpConnection& c) { send_collective(c, {CollectiveOp::AllGather, 1, 0, 4}, 4); },
       "out of step: it sent all_gather #0"},
      {[](TcpConnection& c) { send_collective(c, {CollectiveOp::AllReduceSum, 7, 0, 4}, 4); },
       "carries a message from rank 7"},
      {[](TcpConnection& c) {
         auto head = encode_collective_head({CollectiveOp::AllReduceSum, 1, 0, 4});
         head[0] = 9;  // no such op
         head.resize(head.size() + 16);
         c.send(FrameType::Collective, head);
       },
       "unknown op 9"},
      {[](TcpConnection& c) {
         std::vector<uint8_t> tiny(3);  // shorter than a head
         c.send(FrameType::Collective, tiny);
       },
       "malformed"},
      {[](TcpConnection& c) { c.send(FrameType::Ping, encode_u64(1)); },
       "sent a ping frame where collective data belongs"},
      {[](TcpConnection& c) { send_error_quietly(c, "rank 1 ran out of memory"); },
       "rank 1 ran out of memory"},
      {[](TcpConnection& c) {
         const std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
         c.send_raw({reinterpret_cast<const uint8_t*>(junk.data()), junk.size()});
       },
       "bad magic"},
  };
  for (const auto& k : cases) {
    std::string error = against_fake_peer(k.act);
    EXPECT_TRUE(contains(error, "[collective] rank 0: all_reduce_sum #0")) << error;
    EXPECT_TRUE(contains(error, k.expect)) << "want '" << k.expect << "' in: " << error;
  }
}

TEST(CollectiveFakePeer, DyingMidFrameIsAnError) {
  std::string error = against_fake_peer([](TcpConnection& c) {
    // A header announcing a 37-byte payload, then 10 bytes of it, then the connection closes.
    auto frame = encode_frame(FrameType::Collective, std::vector<uint8_t>(37, 0));
    frame.resize(kFrameHeaderSize + 10);
    c.send_raw(frame);
    c.close();
  });
  EXPECT_TRUE(contains(error, "rank 1")) << error;
  EXPECT_TRUE(contains(error, "closed")) << error;
}

TEST(CollectiveFakePeer, ClosingWithoutSendingIsAnError) {
  std::string error = against_fake_peer([](TcpConnection& c) { c.close(); });
  EXPECT_TRUE(contains(error, "rank 1")) << error;
  EXPECT_TRUE(contains(error, "closed")) << error;
}

// The timeout is what is tested here: the peer never sends, so the call must end with an Error.
TEST(CollectiveFakePeer, SilentPeerTimesOut) {
  std::string error = against_fake_peer([](TcpConnection&) {}, 300);
  EXPECT_TRUE(contains(error, "nothing from rank 1 within 300 ms")) << error;
}

#else  // MESHLM_COLLECTIVE_MPI_TEST

// ---- MPI: `mpirun -np 3 transport_collective_mpi_test` ------------------------------------

TEST(CollectiveMpi, SameBitsAsTheReference) {
  GroupOptions o;
  o.timeout_ms = 30000;  // a failure guard
  auto g = mpi_group(o);
  ASSERT_EQ(g->size(), mpi_size());
  std::vector<std::vector<float>> first;
  for (int run = 0; run < 3; ++run) {
    auto results = run_standard_checks(*g);
    if (run == 0) {
      first = results;
      if (g->rank() == 0 && g->size() == 3) {
        std::printf("mpi 3 ranks: all_reduce_sum n=1000 checksum %016" PRIx64 "\n",
                    checksum(results[3]));
      }
    } else {
      ASSERT_EQ(results.size(), first.size());
      for (size_t k = 0; k < first.size(); ++k) {
        EXPECT_EQ(bit_difference(results[k], first[k]), "") << "run " << run << " #" << k;
      }
    }
  }
  // Point to point around the ring.
  const int next = (g->rank() + 1) % g->size(), prev = (g->rank() + g->size() - 1) % g->size();
  std::vector<uint8_t> msg(static_cast<size_t>(3 + g->rank()), uint8_t(g->rank()));
  g->send(next, msg);
  EXPECT_EQ(g->recv(prev), std::vector<uint8_t>(static_cast<size_t>(3 + prev), uint8_t(prev)));
}

#endif

}  // namespace
}  // namespace meshlm::transport

#ifdef MESHLM_COLLECTIVE_MPI_TEST
int main(int argc, char** argv) {
  meshlm::transport::mpi_init(&argc, &argv);
  if (meshlm::transport::mpi_size() < 2) {
    std::fprintf(stderr, "transport_collective_mpi_test: run it under mpirun -np 3: skipping\n");
    return 77;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
#endif
