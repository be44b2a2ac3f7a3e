#include "transport/collective.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "transport/mpi_transport.h"

namespace meshlm::transport {
namespace {

const char* op_name(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::Send: return "send";
    case CollectiveOp::AllReduceSum: return "all_reduce_sum";
    case CollectiveOp::AllGather: return "all_gather";
    case CollectiveOp::Gather: return "gather";
  }
  return "unknown";
}

size_t element_size(CollectiveOp op) { return op == CollectiveOp::Send ? 1 : sizeof(float); }

// The largest frame sent on the caller's thread: one activation row of hidden 8192. Larger
// frames go through the sending thread even where the link would buffer them: past the peer's
// receive window (about 64 KB at Linux's default 128 KB receive buffer) an inline send waits
// for reads the peer starts only after its own send, and sending while receiving wins
// (bench/collective_bench on loopback: 48 KB inline 216 us, through the thread 147 us; 32 KB
// inline 26 us, through the thread 70 us).
constexpr size_t kMaxInlineFrame = (size_t{32} << 10) + kCollectiveHeadSize;

// Room for an Error frame from the peer even when the expected message is tiny.
constexpr uint64_t kMinRecvLimit = 64 * 1024;

std::span<const uint8_t> float_bytes(const std::vector<float>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)};
}

}  // namespace

std::vector<uint8_t> encode_collective_head(const CollectiveHead& head) {
  PayloadWriter w;
  w.u8(static_cast<uint8_t>(head.op));
  w.u32(head.rank);
  w.u64(head.seq);
  w.u64(head.count);
  return w.take();
}

CollectiveHead decode_collective_head(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  CollectiveHead h;
  uint8_t op = r.u8();
  if (op < 1 || op > 4) {
    throw Error("protocol", "malformed collective message: unknown op " + std::to_string(op));
  }
  h.op = static_cast<CollectiveOp>(op);
  h.rank = r.u32();
  h.seq = r.u64();
  h.count = r.u64();
  const size_t elem = element_size(h.op);
  if (h.count > r.remaining() / elem || h.count * elem != r.remaining()) {
    throw Error("protocol", "malformed collective message: announces " +
                                std::to_string(h.count) + " elements of " + std::to_string(elem) +
                                " bytes but carries " + std::to_string(r.remaining()) + " bytes");
  }
  return h;
}

Group::Group(int rank, std::vector<std::unique_ptr<Connection>> peers, GroupOptions options)
    : rank_(rank), size_(static_cast<int>(peers.size())), options_(options) {
  if (size_ < 1 || rank < 0 || rank >= size_) {
    throw Error("collective", "rank " + std::to_string(rank) + " is not in a group of " +
                                  std::to_string(peers.size()));
  }
  for (int r = 0; r < size_; ++r) {
    if ((r == rank) != (peers[r] == nullptr)) {
      throw Error("collective", r == rank ? "a group has no connection to its own rank"
                                          : "no connection to rank " + std::to_string(r));
    }
    peers_.emplace_back(std::move(peers[r]));
  }
  sent_.assign(size_, 0);
  received_.assign(size_, 0);
  if (options_.inline_small_sends && size_ > 1) {
    inline_limit_ = kMaxInlineFrame;
    for (auto& p : peers_) {
      if (p) inline_limit_ = std::min(inline_limit_, p->reserve_send_buffer(size_t{256} << 10));
    }
  }
}

void Group::check_usable(const std::string& call) const {
  if (broken()) {
    throw Error("collective", "rank " + std::to_string(rank_) + ": " + call +
                                  ": the group is broken by an earlier failure (" +
                                  broken_reason_ + ")");
  }
}

void Group::check_peer(int r, const std::string& call) const {
  if (r < 0 || r >= size_ || r == rank_) {
    throw Error("collective", "rank " + std::to_string(rank_) + ": " + call + ": rank " +
                                  std::to_string(r) + " is not a peer in a group of " +
                                  std::to_string(size_));
  }
}

void Group::close_all() {
  for (auto& p : peers_) {
    if (p) p->close();
  }
}

void Group::fail(const std::string& message) {
  std::string full = "rank " + std::to_string(rank_) + ": " + message;
  if (broken_reason_.empty()) broken_reason_ = full;
  close_all();
  throw Error("collective", full);
}

Frame Group::recv_frame(int from, CollectiveOp op, uint64_t seq, int64_t expect_count,
                        const std::string& call) {
  const std::string who = "rank " + std::to_string(from);
  uint64_t limit = kMaxPayload;
  if (expect_count >= 0) {
    limit = std::max<uint64_t>(kMinRecvLimit, kCollectiveHeadSize + static_cast<uint64_t>(
                                                                          expect_count) *
                                                                          element_size(op));
  }
  Frame f;
  try {
    f = recv_checked(*peers_[from], options_.timeout_ms, limit);
  } catch (const TimeoutError&) {
    throw Error("collective", call + ": nothing from " + who + " within " +
                                  std::to_string(options_.timeout_ms) + " ms");
  } catch (const Error& e) {
    throw Error("collective", call + ": " + who + " (" + peers_[from]->peer() + "): " + e.what());
  }
  if (f.type() != FrameType::Collective) {
    throw Error("collective", call + ": " + who + " sent a " + frame_type_name(f.header.type) +
                                  " frame where collective data belongs");
  }
  CollectiveHead h;
  try {
    h = decode_collective_head(f.payload);
  } catch (const Error& e) {
    throw Error("collective", call + ": " + who + ": " + e.what());
  }
  if (h.op != op || h.seq != seq) {
    throw Error("collective", call + ": " + who + " is out of step: it sent " + op_name(h.op) +
                                  " #" + std::to_string(h.seq) + " (every rank must call the " +
                                  "same collectives in the same order)");
  }
  if (h.rank != static_cast<uint32_t>(from)) {
    throw Error("collective", call + ": the connection to " + who + " carries a message from rank " +
                                  std::to_string(h.rank));
  }
  if (expect_count >= 0 && h.count != static_cast<uint64_t>(expect_count)) {
    throw Error("collective", call + ": " + who + " sent " + std::to_string(h.count) +
                                  (op == CollectiveOp::Send ? " bytes" : " floats") +
                                  ", this rank expects " + std::to_string(expect_count) +
                                  " (every rank must pass the same size)");
  }
  return f;
}

void Group::send(int to, std::span<const uint8_t> bytes) {
  const std::string call = "send to rank " + std::to_string(to);
  check_usable(call);
  check_peer(to, call);
  auto head = encode_collective_head(
      {CollectiveOp::Send, static_cast<uint32_t>(rank_), sent_[to], bytes.size()});
  std::span<const uint8_t> pieces[2] = {head, bytes};
  try {
    peers_[to]->send_pieces(FrameType::Collective, pieces);
  } catch (const std::exception& e) {
    fail(call + ": " + e.what());
  }
  ++sent_[to];
}

std::vector<uint8_t> Group::recv(int from) {
  const std::string call = "recv from rank " + std::to_string(from);
  check_usable(call);
  check_peer(from, call);
  std::vector<uint8_t> out;
  try {
    Frame f = recv_frame(from, CollectiveOp::Send, received_[from], -1, call);
    out.assign(f.payload.begin() + kCollectiveHeadSize, f.payload.end());
  } catch (const Error& e) {
    fail(e.message());
  }
  ++received_[from];
  return out;
}

void Group::recv(int from, std::span<uint8_t> out) {
  const std::string call = "recv from rank " + std::to_string(from);
  check_usable(call);
  check_peer(from, call);
  try {
    Frame f = recv_frame(from, CollectiveOp::Send, received_[from],
                         static_cast<int64_t>(out.size()), call);
    if (!out.empty()) std::memcpy(out.data(), f.payload.data() + kCollectiveHeadSize, out.size());
  } catch (const Error& e) {
    fail(e.message());
  }
  ++received_[from];
}

// The sending thread: one per group, started by the first collective that needs it. It owns
// copies of what it uses (the connections, the frame), so that it can be left behind if a send
// cannot be interrupted (MPI) without touching freed memory.
struct Group::Sender {
  std::mutex m;
  std::condition_variable posted_cv, done_cv;
  bool pending = false;  // a job is posted and not finished
  bool stop = false;
  std::shared_ptr<const std::vector<uint8_t>> head;
  std::shared_ptr<const std::vector<float>> mine;
  int only = -1;      // >= 0: the job's frame goes to that rank alone
  std::string error;  // the finished job's, "" when every send went out
  std::thread thread;
};

namespace {

// The frame to every peer, or (only >= 0) to that one.
std::string send_to_peers(const std::vector<std::shared_ptr<Connection>>& peers, int self,
                          const std::vector<uint8_t>& head, const std::vector<float>& mine,
                          int only = -1) {
  for (int r = 0; r < static_cast<int>(peers.size()); ++r) {
    if (r == self || (only >= 0 && r != only)) continue;
    try {
      std::span<const uint8_t> pieces[2] = {head, float_bytes(mine)};
      peers[r]->send_pieces(FrameType::Collective, pieces);
    } catch (const std::exception& e) {
      return "sending to rank " + std::to_string(r) + " (" + peers[r]->peer() + "): " + e.what();
    }
  }
  return "";
}

}  // namespace

void Group::post_send(std::shared_ptr<const std::vector<uint8_t>> head,
                      std::shared_ptr<const std::vector<float>> mine, const std::string& call,
                      int only) {
  if (!sender_) {
    auto s = std::make_shared<Sender>();
    try {
      s->thread = std::thread([s, peers = peers_, self = rank_] {
        std::unique_lock lock(s->m);
        for (;;) {
          s->posted_cv.wait(lock, [&] { return s->pending || s->stop; });
          if (!s->pending) return;  // stopped with nothing to send
          auto head = std::move(s->head);
          auto mine = std::move(s->mine);
          const int to = s->only;
          lock.unlock();
          std::string error = send_to_peers(peers, self, *head, *mine, to);
          lock.lock();
          s->error = std::move(error);
          s->pending = false;
          s->done_cv.notify_all();
        }
      });
    } catch (const std::exception& e) {
      fail(call + ": cannot start the sending thread: " + e.what());
    }
    sender_ = std::move(s);
  }
  std::lock_guard lock(sender_->m);
  sender_->head = std::move(head);
  sender_->mine = std::move(mine);
  sender_->only = only;
  sender_->error.clear();
  sender_->pending = true;
  sender_->posted_cv.notify_one();
}

Group::~Group() {
  if (!sender_) return;
  bool busy;
  {
    std::lock_guard lock(sender_->m);
    sender_->stop = true;
    busy = sender_->pending;
    sender_->posted_cv.notify_one();
  }
  // A send that closing could not interrupt (MPI) keeps the thread: it owns what it touches.
  if (busy) {
    sender_->thread.detach();
  } else {
    sender_->thread.join();
  }
}

void Group::exchange(CollectiveOp op, std::shared_ptr<const std::vector<float>> mine,
                     int64_t expect_count, const PartFn& on_part, const std::string& call,
                     int root) {
  const uint64_t seq = seq_++;
  const auto t0 = std::chrono::steady_clock::now();
  struct Account {  // counts the call however it ends
    Stats& s;
    std::chrono::steady_clock::time_point t0;
    ~Account() {
      s.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  } account{stats_, t0};
  ++stats_.calls;
  // Who this rank sends to: every peer; to a root, that one; as the root, nobody.
  const bool sends = size_ > 1 && root != rank_;
  const int only = root >= 0 ? root : -1;
  stats_.bytes_sent +=
      sends ? uint64_t(root >= 0 ? 1 : size_ - 1) * mine->size() * sizeof(float) : 0;
  auto head = std::make_shared<const std::vector<uint8_t>>(encode_collective_head(
      {op, static_cast<uint32_t>(rank_), seq, static_cast<uint64_t>(mine->size())}));

  const bool posted = sends && mine->size() * sizeof(float) + head->size() > inline_limit_;
  if (posted) {
    post_send(head, mine, call, only);
  } else if (sends) {
    // Every link buffers this frame whole: the sends return without waiting for a receiver.
    std::string error = send_to_peers(peers_, rank_, *head, *mine, only);
    if (!error.empty()) fail(call + ": " + error);
  }

  std::string error;
  try {
    for (int r = 0; r < size_ && (root < 0 || root == rank_); ++r) {
      if (r == rank_) {
        on_part(r, reinterpret_cast<const uint8_t*>(mine->data()), mine->size());
        continue;
      }
      Frame f = recv_frame(r, op, seq, expect_count, call);
      on_part(r, f.payload.data() + kCollectiveHeadSize,
              (f.payload.size() - kCollectiveHeadSize) / sizeof(float));
    }
  } catch (const Error& e) {
    error = e.message();
  } catch (const std::exception& e) {
    error = call + ": " + e.what();
  }
  if (!posted) {
    if (!error.empty()) fail(error);
    return;
  }

  // Peers that take our data late are waited for as long as their data would be.
  auto wait_done = [&](int ms) {
    std::unique_lock lock(sender_->m);
    auto done = [&] { return !sender_->pending; };
    if (ms < 0) {
      sender_->done_cv.wait(lock, done);
      return true;
    }
    return sender_->done_cv.wait_for(lock, std::chrono::milliseconds(ms), done);
  };
  if (error.empty() && !wait_done(options_.timeout_ms)) {
    error = call + ": the peers did not take this rank's data within " +
            std::to_string(options_.timeout_ms) + " ms";
  }
  if (!error.empty()) {
    close_all();  // wakes a send blocked on a TCP peer at once
    wait_done(1000);  // one that closing cannot interrupt (MPI) is left to the destructor
    fail(error);
  }
  std::string send_error;
  {
    std::lock_guard lock(sender_->m);
    send_error = sender_->error;
  }
  if (!send_error.empty()) fail(call + ": " + send_error);
}

void Group::all_reduce_sum(float* data, size_t n) {
  const std::string call = "all_reduce_sum #" + std::to_string(seq_) + " (" +
                           std::to_string(n) + " floats)";
  check_usable(call);
  if (size_ == 1) {
    ++seq_;
    return;
  }
  auto mine = std::make_shared<const std::vector<float>>(data, data + n);
  std::vector<float> sum(n);
  exchange(
      CollectiveOp::AllReduceSum, mine, static_cast<int64_t>(n),
      [&](int r, const uint8_t* bytes, uint64_t count) {
        // Rank order: sum = x_0, then sum += x_1, ..., x_{N-1}.
        if (r == 0) {
          if (count) std::memcpy(sum.data(), bytes, count * sizeof(float));
          return;
        }
        for (uint64_t i = 0; i < count; ++i) {
          float v;
          std::memcpy(&v, bytes + i * sizeof(float), sizeof(float));
          sum[i] += v;
        }
      },
      call);
  if (n) std::memcpy(data, sum.data(), n * sizeof(float));
}

std::vector<float> Group::all_gather(std::span<const float> mine_span,
                                     std::vector<size_t>* counts) {
  const std::string call = "all_gather #" + std::to_string(seq_) + " (" +
                           std::to_string(mine_span.size()) + " floats from this rank)";
  check_usable(call);
  auto mine = std::make_shared<const std::vector<float>>(mine_span.begin(), mine_span.end());
  // Contributions arrive in rank order: append each as it comes.
  std::vector<float> out;
  std::vector<size_t> sizes(size_, 0);
  exchange(
      CollectiveOp::AllGather, mine, -1,
      [&](int r, const uint8_t* bytes, uint64_t count) {
        sizes[r] = count;
        size_t at = out.size();
        out.resize(at + count);
        if (count) std::memcpy(out.data() + at, bytes, count * sizeof(float));
      },
      call);
  if (counts) *counts = std::move(sizes);
  return out;
}

std::vector<float> Group::gather(std::span<const float> mine_span, int root,
                                 std::vector<size_t>* counts) {
  const std::string call = "gather #" + std::to_string(seq_) + " to rank " + std::to_string(root) +
                           " (" + std::to_string(mine_span.size()) + " floats from this rank)";
  check_usable(call);
  if (root < 0 || root >= size_) fail(call + ": no rank " + std::to_string(root));
  auto mine = std::make_shared<const std::vector<float>>(mine_span.begin(), mine_span.end());
  std::vector<float> out;
  std::vector<size_t> sizes(root == rank_ ? size_ : 0, 0);
  exchange(
      CollectiveOp::Gather, mine, -1,
      [&](int r, const uint8_t* bytes, uint64_t count) {
        sizes[r] = count;
        size_t at = out.size();
        out.resize(at + count);
        if (count) std::memcpy(out.data() + at, bytes, count * sizeof(float));
      },
      call, root);
  if (counts) *counts = std::move(sizes);
  return out;
}

std::unique_ptr<Group> mpi_group(GroupOptions options, int tag) {
  if (!mpi_available()) {
    throw Error("mpi", "this build has no MPI transport (install an MPI library and reconfigure "
                       "with -DMESHLM_WITH_MPI=ON)");
  }
  const int rank = mpi_rank(), size = mpi_size();
  std::vector<std::unique_ptr<Connection>> peers(size);
  for (int r = 0; r < size; ++r) {
    if (r != rank) peers[r] = mpi_connect(r, tag);
  }
  return std::make_unique<Group>(rank, std::move(peers), options);
}

}  // namespace meshlm::transport
