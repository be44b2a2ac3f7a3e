// Two MPI ranks: handshake over the MPI transport, then a forward frame with 4 MiB of
// activations echoed back bit-identically, then a wrong-secret refusal on a second tag.
// Run: mpirun --allow-run-as-root --oversubscribe -np 2 transport_mpi_test
#include <cstdio>
#include <cstring>

#include "transport/handshake.h"
#include "transport/messages.h"
#include "transport/mpi_transport.h"

using namespace meshlm::transport;

static int fail(const char* what) {
  std::fprintf(stderr, "transport_mpi_test: FAIL: %s\n", what);
  return 1;
}

int main(int argc, char** argv) {
  try {
    mpi_init(&argc, &argv);
    if (mpi_size() != 2) {
      std::fprintf(stderr, "transport_mpi_test: needs exactly 2 ranks: skipping\n");
      return 77;
    }
    int rank = mpi_rank();
    auto conn = mpi_connect(1 - rank);
    HandshakeOptions h;
    h.secret = "mpi-secret";
    h.fingerprint = "fp";
    h.timeout_ms = 20000;
    ForwardMsg m;
    m.id = 77;
    m.chunks = {{1, 0, 1024, true, false}};
    m.tokens.assign(1024, 5);
    m.hidden_dim = 1024;
    m.hidden.resize(1024 * 1024);
    for (size_t i = 0; i < m.hidden.size(); ++i) m.hidden[i] = 0.001f * static_cast<float>(i);
    if (rank == 0) {
      handshake_client(*conn, h);
      auto head = encode_forward_head(m);
      std::span<const uint8_t> pieces[2] = {
          head, {reinterpret_cast<const uint8_t*>(m.hidden.data()), m.hidden.size() * 4}};
      conn->send_pieces(FrameType::Forward, pieces);
      Frame back = recv_checked(*conn, 20000);
      ForwardMsg d = decode_forward(back.payload);
      if (d.id != 77 || d.hidden != m.hidden || d.tokens != m.tokens) return fail("echo differs");
      // A second connection (tag) with the wrong secret is refused on both sides.
      auto bad = mpi_connect(1, 8);
      h.secret = "wrong";
      try {
        handshake_client(*bad, h);
        return fail("wrong secret accepted");
      } catch (const meshlm::Error& e) {
        if (!std::strstr(e.what(), "secret mismatch")) return fail(e.what());
      }
    } else {
      handshake_server(*conn, h);
      Frame f = recv_checked(*conn, 20000);
      ForwardMsg d = decode_forward(f.payload);
      conn->send(FrameType::Forward, encode_forward(d));
      auto bad = mpi_connect(0, 8);
      try {
        handshake_server(*bad, h);
        return fail("wrong secret accepted by the server");
      } catch (const meshlm::Error& e) {
        if (!std::strstr(e.what(), "secret mismatch")) return fail(e.what());
      }
    }
    std::fprintf(stderr, "transport_mpi_test: rank %d ok\n", rank);
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}
