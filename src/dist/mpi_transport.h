// MPI transport: frames between the ranks of an `mpirun` job, for clusters that launch with MPI
// and for RDMA fabrics reached through the MPI library. Built when CMake finds MPI and
// MESHLM_WITH_MPI is on; otherwise every function here throws Error("mpi", ...) explaining how
// to get it (mpi_stub.cpp).
//
// A frame travels as one MPI message for the header followed by one message per payload piece
// (MPI keeps messages between two ranks with the same tag in order), so activations are sent
// from the caller's buffer without a copy.
#pragma once

#include <memory>

#include "dist/transport.h"

namespace meshlm::dist {

// True when this build has the MPI transport.
bool mpi_available();
// Initialises MPI once (MPI_THREAD_MULTIPLE requested; with less, calls are serialised by a
// lock). MPI_Finalize runs at exit. argc/argv may be null.
void mpi_init(int* argc = nullptr, char*** argv = nullptr);
int mpi_rank();
int mpi_size();
// A connection to `peer_rank` in MPI_COMM_WORLD. Several connections to the same peer must use
// different tags.
std::unique_ptr<Connection> mpi_connect(int peer_rank, int tag = 7);

}  // namespace meshlm::dist
