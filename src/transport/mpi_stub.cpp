// Built when MPI is absent or MESHLM_WITH_MPI is off: the MPI transport reports how to get it.
#include <cstdlib>

#include "transport/mpi_transport.h"

namespace meshlm::transport {
namespace {
[[noreturn]] void unavailable() {
  throw Error("mpi",
              "this meshlm was built without MPI; install Open MPI or MPICH (e.g. apt install "
              "libopenmpi-dev openmpi-bin) and rebuild with -DMESHLM_WITH_MPI=ON, or use the TCP "
              "transport (--peers host:port or --stages N)");
}
}  // namespace

bool mpi_available() { return false; }
void mpi_init(int*, char***) { unavailable(); }
bool mpi_initialized() { return false; }
std::string mpi_thread_level() { unavailable(); }
int mpi_rank() { unavailable(); }
int mpi_size() { unavailable(); }
void mpi_abort(int code) { std::_Exit(code); }
std::unique_ptr<Connection> mpi_connect(int, int) { unavailable(); }

}  // namespace meshlm::transport
