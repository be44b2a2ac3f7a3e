#include "transport/mpi_transport.h"

// Only the C API is used; skip the deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace meshlm::transport {
namespace {

std::mutex g_init_mutex;
bool g_serialise = true;  // no MPI_THREAD_MULTIPLE: one MPI call at a time
std::recursive_mutex g_call_mutex;

std::unique_lock<std::recursive_mutex> mpi_lock() {
  return g_serialise ? std::unique_lock(g_call_mutex) : std::unique_lock<std::recursive_mutex>();
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw ConnectionError(std::string("MPI ") + what + " failed: " + std::string(text, len));
  }
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

class MpiConnection : public Connection {
 public:
  MpiConnection(int peer, int tag) : peer_(peer), tag_(tag) {}

  void send_pieces(FrameType type, std::span<const std::span<const uint8_t>> pieces) override {
    uint64_t size = 0;
    for (auto p : pieces) size += p.size();
    if (size > kMaxPayload) throw Error("protocol", "frame payload exceeds 1 GiB");
    if (closed_) throw ConnectionError("MPI connection to " + peer() + " is closed");
    auto header = encode_header({send_version_, static_cast<uint16_t>(type), 0, size});
    std::lock_guard send_lock(send_mutex_);  // a frame's messages must not interleave
    send_message(header.data(), header.size());
    for (auto p : pieces) {
      if (!p.empty()) send_message(p.data(), p.size());
    }
  }

  Frame recv(int timeout_ms, uint64_t max_payload) override {
    std::array<uint8_t, kFrameHeaderSize> header;
    size_t got = recv_message(header.data(), header.size(), timeout_ms, true);
    if (got != header.size()) throw Error("protocol", "malformed frame: short MPI header message");
    Frame f;
    f.header = decode_header(header, max_payload);
    f.payload.resize(f.header.payload_size);
    size_t done = 0;
    while (done < f.payload.size()) {
      done += recv_message(f.payload.data() + done, f.payload.size() - done, 30000, false);
    }
    return f;
  }

  void close() override { closed_ = true; }
  std::string peer() const override { return "rank " + std::to_string(peer_); }

 private:
  // With MPI_THREAD_MULTIPLE a plain MPI_Send. Serialised, an MPI_Isend tested with the lock
  // released in between: a send that waits for the peer to receive must not keep this
  // process's readers from receiving (two ranks sending large frames to each other would
  // deadlock).
  void send_message(const uint8_t* data, size_t size) {
    if (!g_serialise) {
      check(MPI_Send(data, static_cast<int>(size), MPI_BYTE, peer_, tag_, MPI_COMM_WORLD), "send");
      return;
    }
    MPI_Request request;
    {
      auto lock = mpi_lock();
      check(MPI_Isend(data, static_cast<int>(size), MPI_BYTE, peer_, tag_, MPI_COMM_WORLD,
                      &request),
            "send");
    }
    for (int spins = 0;; ++spins) {
      int done = 0;
      {
        auto lock = mpi_lock();
        check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "send");
      }
      if (done) return;
      if (spins < 64) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }

  // Receives one MPI message of at most `capacity` bytes; polls so that timeouts and close()
  // work without MPI cancellation.
  size_t recv_message(uint8_t* out, size_t capacity, int timeout_ms, bool first) {
    auto start = std::chrono::steady_clock::now();
    MPI_Status status;
    for (;;) {
      if (closed_) throw ConnectionError("MPI connection to " + peer() + " is closed");
      int flag = 0;
      {
        auto lock = mpi_lock();
        check(MPI_Iprobe(peer_, tag_, MPI_COMM_WORLD, &flag, &status), "probe");
      }
      if (flag) break;
      auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
      if (timeout_ms >= 0 && waited >= timeout_ms) {
        if (first) throw TimeoutError("no frame from " + peer() + " within " +
                                      std::to_string(timeout_ms) + " ms");
        throw ConnectionError(peer() + " stalled in the middle of a frame");
      }
      // Quick polls while a frame is likely close behind; an idle reader costs ~1000 probes/s.
      std::this_thread::sleep_for(
          std::chrono::microseconds(waited < 10 ? 20 : waited < 200 ? 200 : 1000));
    }
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    if (count < 0 || static_cast<size_t>(count) > capacity) {
      throw Error("protocol", "malformed frame: MPI message of " + std::to_string(count) +
                                  " bytes is larger than the frame announced");
    }
    auto lock = mpi_lock();
    check(MPI_Recv(out, count, MPI_BYTE, peer_, tag_, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "recv");
    return static_cast<size_t>(count);
  }

  int peer_, tag_;
  std::atomic<bool> closed_{false};
  std::mutex send_mutex_;
};

}  // namespace

bool mpi_available() { return true; }

void mpi_init(int* argc, char*** argv) {
  std::lock_guard lock(g_init_mutex);
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  int provided = 0;
  const char* level = std::getenv("MESHLM_MPI_THREAD");
  int wanted = level && std::string(level) == "serialized" ? MPI_THREAD_SERIALIZED
                                                            : MPI_THREAD_MULTIPLE;
  if (MPI_Init_thread(argc, argv, wanted, &provided) != MPI_SUCCESS) {
    throw Error("mpi", "MPI_Init_thread failed");
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    throw Error("mpi", "the MPI library supports neither MPI_THREAD_MULTIPLE nor SERIALIZED");
  }
  g_serialise = provided < MPI_THREAD_MULTIPLE;
  std::atexit(finalize_at_exit);
}

bool mpi_initialized() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

std::string mpi_thread_level() {
  mpi_init();
  return g_serialise ? "serialized" : "multiple";
}

void mpi_abort(int code) {
  if (mpi_initialized()) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

int mpi_rank() {
  mpi_init();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int mpi_size() {
  mpi_init();
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

std::unique_ptr<Connection> mpi_connect(int peer_rank, int tag) {
  int size = mpi_size();
  if (peer_rank < 0 || peer_rank >= size || peer_rank == mpi_rank()) {
    throw Error("mpi", "peer rank " + std::to_string(peer_rank) + " is not another rank of " +
                           std::to_string(size));
  }
  return std::make_unique<MpiConnection>(peer_rank, tag);
}

}  // namespace meshlm::transport
