// Collectives for tensor parallelism: a Group of `size` ranks joined by point-to-point
// Connections (TCP or MPI, one to every other rank), with send/recv, all_gather and
// all_reduce_sum over f32.
//
// Contract
//  - Every rank calls the same collectives in the same order (all_gather, all_reduce_sum), like
//    MPI. Each call has a sequence number, the same on every rank; a message from another call
//    (a rank that skipped or reordered one) is an Error, not silently mixed in.
//  - Who sends what: in a collective every rank sends its own contribution, unchanged, to every
//    other rank (one FrameType::Collective frame per peer, sent in rank order 0..N-1), and
//    receives every other rank's contribution in rank order 0..N-1. A frame of up to 32 KB
//    (one activation row of hidden <= 8192) that every link buffers whole
//    (Connection::reserve_send_buffer: TCP) is sent on the caller's thread before it
//    receives: such a send never waits for a receiver. Larger frames, and links that give no such
//    guarantee (MPI), go through the group's one sending thread (started on first use,
//    kept for the group's life) while the caller receives. Both sides walking the ranks in the
//    same order makes that deadlock-free even when a send waits for its receiver (MPI
//    rendezvous, full TCP buffers): the pending message p->q that is smallest by (q, p) is
//    always the one both its sender and its receiver are at.
//  - all_gather: contributions may differ in size (zero included); every rank gets all of them
//    concatenated in rank order, and the sizes.
//  - gather: all_gather's result on one rank, the root, only: the others send their
//    contribution to the root alone and receive nothing ((N-1) contributions cross the links
//    instead of N(N-1)).
//  - all_reduce_sum: every rank passes the same n; the result is, for each element,
//    ((x_0 + x_1) + x_2) + ... + x_{N-1} in f32, computed by every rank from the same gathered
//    bits in the same order, so it is bit-identical on every rank, in every run, over every
//    transport (the wire carries the f32 bits verbatim). It moves (N-1)*n floats per rank
//    each way: simple, not bandwidth-optimal (a ring would need a fixed per-element order to
//    stay deterministic).
//  - send/recv: point-to-point bytes between two ranks, in order per pair. A message sent
//    before a collective must be received before it (they share the connection). send() runs
//    on the caller's thread and has no timeout of its own: it returns once the transport took
//    the message, which for a large one may wait for the peer to receive it.
//  - Errors: anything wrong (a peer that closed or died, nothing within timeout_ms, a frame of
//    another type, size, rank or sequence number, an Error frame) throws Error("collective",
//    ...) naming this rank, the call and the peer, never hangs past the timeout and never
//    crashes. The Group is then broken: it closes every connection (so peers fail fast instead
//    of waiting for their timeout) and every later call throws. Over MPI a close is local only,
//    so peers notice through their timeout.
//  - A Group is used by one thread at a time.
//
// Wire: FrameType::Collective, payload = CollectiveHead (kCollectiveHeadSize bytes, little
// endian: u8 op, u32 source rank, u64 sequence number, u64 count) + count elements (bytes for
// send/recv, f32 otherwise).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "transport/transport.h"

namespace meshlm::transport {

enum class CollectiveOp : uint8_t { Send = 1, AllReduceSum = 2, AllGather = 3, Gather = 4 };

struct CollectiveHead {
  CollectiveOp op = CollectiveOp::Send;
  uint32_t rank = 0;   // the sender
  uint64_t seq = 0;    // collectives: the call's number in the group; send/recv: per pair
  uint64_t count = 0;  // elements that follow: bytes (Send) or f32
};
inline constexpr size_t kCollectiveHeadSize = 1 + 4 + 8 + 8;

std::vector<uint8_t> encode_collective_head(const CollectiveHead& head);
// Parses the head of a Collective payload and checks that exactly `count` elements follow;
// throws Error("protocol", ...) otherwise.
CollectiveHead decode_collective_head(std::span<const uint8_t> payload);

struct GroupOptions {
  // How long a rank waits for each peer's message (and for its own sends to be taken) before
  // the call fails; < 0 waits forever. A failure guard: ranks reach a collective at different
  // times.
  int timeout_ms = 60000;
  // Send frames the links buffer whole on the caller's thread (see above); false sends every
  // collective through the sending thread (tests cover both paths with it).
  bool inline_small_sends = true;
};

class Group {
 public:
  // peers[r] is the connection to rank r (peers.size() == size), peers[rank] is null. The
  // connections are used by this group only.
  Group(int rank, std::vector<std::unique_ptr<Connection>> peers, GroupOptions options = {});
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  // What the collectives (all_reduce_sum, all_gather) cost this rank so far: how many, the
  // payload bytes it sent (to all peers together), and the wall time spent inside them
  // (sending, the link, and waiting for slower ranks). Read by the group's own thread.
  struct Stats {
    uint64_t calls = 0;
    uint64_t bytes_sent = 0;
    double seconds = 0;
  };
  const Stats& stats() const { return stats_; }

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool broken() const { return !broken_reason_.empty(); }

  void send(int to, std::span<const uint8_t> bytes);
  // The next message from `from`, which must be exactly out.size() bytes.
  void recv(int from, std::span<uint8_t> out);
  // The next message from `from`, whatever its size.
  std::vector<uint8_t> recv(int from);

  // In place: data[i] becomes the sum over ranks in rank order (see above).
  void all_reduce_sum(float* data, size_t n);
  // Every rank's `mine`, concatenated in rank order; counts (if given) gets each rank's size.
  std::vector<float> all_gather(std::span<const float> mine,
                                std::vector<size_t>* counts = nullptr);
  // all_gather's result on rank `root`; the other ranks get nothing (an empty vector and counts).
  std::vector<float> gather(std::span<const float> mine, int root,
                            std::vector<size_t>* counts = nullptr);

 private:
  using PartFn = std::function<void(int rank, const uint8_t* bytes, uint64_t count)>;
  void check_usable(const std::string& call) const;
  void check_peer(int r, const std::string& call) const;
  // Breaks the group (closes every connection) and throws Error("collective", message).
  [[noreturn]] void fail(const std::string& message);
  void close_all();
  // Sends `mine` to every peer (inline or through the sending thread) while receiving every
  // peer's contribution in rank order; on_part sees each rank's contribution (this rank's
  // included) in rank order 0..N-1. expect_count < 0: any size. root >= 0: only that rank
  // receives (the others send to it alone, and on_part sees nothing on them).
  void exchange(CollectiveOp op, std::shared_ptr<const std::vector<float>> mine,
                int64_t expect_count, const PartFn& on_part, const std::string& call,
                int root = -1);
  // The next Collective frame from `from`, checked against op, seq and expect_count.
  Frame recv_frame(int from, CollectiveOp op, uint64_t seq, int64_t expect_count,
                   const std::string& call);

  struct Sender;  // the sending thread and what it shares with the group (collective.cpp)
  // Hands one frame (head + data) for every peer (only >= 0: for that rank alone) to the
  // sending thread.
  void post_send(std::shared_ptr<const std::vector<uint8_t>> head,
                 std::shared_ptr<const std::vector<float>> mine, const std::string& call,
                 int only = -1);
  // Waits up to the group's timeout for the posted sends; "" when they all went out.
  std::string wait_sent(const std::string& call);

  int rank_ = 0, size_ = 1;
  std::vector<std::shared_ptr<Connection>> peers_;
  size_t inline_limit_ = 0;  // frames up to this many payload bytes are sent inline
  std::shared_ptr<Sender> sender_;
  GroupOptions options_;
  uint64_t seq_ = 0;                      // collectives so far
  std::vector<uint64_t> sent_, received_;  // send/recv messages per peer
  std::string broken_reason_;
  Stats stats_;
};

// The tag of the connections mpi_group() opens (mpi_transport.h has 100 and 101).
inline constexpr int kMpiCollectiveTag = 110;
// A Group of every rank of MPI_COMM_WORLD (mpi_init() first); throws Error("mpi", ...) in a
// build without MPI.
std::unique_ptr<Group> mpi_group(GroupOptions options = {}, int tag = kMpiCollectiveTag);

}  // namespace meshlm::transport
