// MPI transport: frames between the ranks of an `mpirun` job, for clusters that launch with MPI
// and for RDMA fabrics reached through the MPI library. Built when CMake finds MPI and
// MESHLM_WITH_MPI is on; otherwise every function here throws Error("mpi", ...) explaining how
// to get it (mpi_stub.cpp).
//
// A frame travels as one MPI message for the header followed by one message per payload piece
// (MPI keeps messages between two ranks with the same tag in order), so activations are sent
// from the caller's buffer without a copy.
//
// Receiving polls (MPI_Iprobe, then a short sleep that grows to 1 ms while idle) instead of
// blocking in MPI_Recv: Open MPI's blocking calls spin a whole core, and polling lets
// recv() honour timeouts and close(). With MPI_THREAD_MULTIPLE (Debian's Open MPI 4.1 grants
// it) MPI is called from any thread; with only SERIALIZED every call takes one process-wide
// lock and sends use MPI_Isend + MPI_Test so that a large send never holds the lock while it
// waits for the peer. MESHLM_MPI_THREAD=serialized asks for SERIALIZED (tests of that path).
//
// Pipeline addresses: "mpi:RANK" names a rank where "host:port" names a TCP worker
// (connect_address below); `mpirun -np N meshlm serve --transport mpi` makes ranks 1..N-1 the
// workers of stages 1..N-1 (worker.h run_mpi_worker, remote_pipeline.h).
#pragma once

#include <memory>
#include <string>

#include "transport/tcp_transport.h"
#include "transport/transport.h"

namespace meshlm::transport {

// True when this build has the MPI transport.
bool mpi_available();
// Initialises MPI once (MPI_THREAD_MULTIPLE requested; with less, calls are serialised by a
// lock). MPI_Finalize runs at exit. argc/argv may be null.
void mpi_init(int* argc = nullptr, char*** argv = nullptr);
// True between mpi_init() and MPI_Finalize (false in a build without MPI).
bool mpi_initialized();
// "multiple" or "serialized": the thread level MPI granted (mpi_init first).
std::string mpi_thread_level();
int mpi_rank();
int mpi_size();
// Ends every rank of the job (MPI_Abort): for a coordinator that fails while worker ranks wait
// for it, so that mpirun does not hang.
[[noreturn]] void mpi_abort(int code);
// A connection to `peer_rank` in MPI_COMM_WORLD. Several connections to the same peer must use
// different tags.
std::unique_ptr<Connection> mpi_connect(int peer_rank, int tag = 7);

// The tags of the pipeline's two logical connections between ranks.
constexpr int kMpiSessionTag = 100;   // coordinator (rank 0) <-> the worker of a rank
constexpr int kMpiUpstreamTag = 101;  // rank k-1 -> rank k: activations and releases

inline std::string mpi_address(int rank) { return "mpi:" + std::to_string(rank); }
inline bool is_mpi_address(const std::string& address) { return address.rfind("mpi:", 0) == 0; }
// "mpi:3" -> 3; throws Error("mpi", ...) when malformed.
inline int mpi_address_rank(const std::string& address) {
  size_t used = 0;
  int rank = -1;
  try {
    rank = std::stoi(address.substr(4), &used);
  } catch (const std::exception&) {
  }
  if (!is_mpi_address(address) || rank < 0 || used + 4 != address.size()) {
    throw Error("mpi", "malformed MPI address '" + address + "' (want mpi:RANK)");
  }
  return rank;
}

// Connects to "host:port" over TCP (within timeout_ms) or to "mpi:RANK" with `mpi_tag`.
inline std::unique_ptr<Connection> connect_address(const std::string& address, int mpi_tag,
                                                   int timeout_ms) {
  if (is_mpi_address(address)) return mpi_connect(mpi_address_rank(address), mpi_tag);
  return tcp_connect(address, timeout_ms);
}

}  // namespace meshlm::transport
