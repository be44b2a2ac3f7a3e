// Model sync throughput over loopback (not a test). Writes a synthetic model of about 1.2 GB
// (f32, hidden 2048, 6 layers, vocab 32768) into WORK_DIR once, then syncs layers 2-6 plus the
// final norm and LM head (~1.2 GB) into an empty cache of an in-process worker and prints the
// rate; the second line is a restart (everything cached: re-hash only).
//
//   ninja -C build-sync remote_sync_bench && build-sync/tests/remote/remote_sync_bench /tmp/syncbench
//
// Compare with a plain TCP copy of one file on the same machine, e.g.
//   python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",9999));s.listen(1);
//     c=s.accept()[0];b=bytearray(1<<20);n=0
//     while (k:=c.recv_into(b)):n+=k
//     print(n)' & sleep 0.5; time cat WORK_DIR/model/model.safetensors > /dev/tcp/127.0.0.1/9999
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/log.h"
#include "remote/model_sync.h"
#include "remote/remote_pipeline.h"
#include "sync_test_util.h"

int main(int argc, char** argv) {
  using namespace meshlm;
  namespace fs = std::filesystem;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s WORK_DIR\n", argv[0]);
    return 2;
  }
  try {
    fs::path work = argv[1];
    fs::path model = work / "model";
    if (!fs::exists(model / "config.json")) {
      std::fprintf(stderr, "writing a synthetic model to %s ...\n", model.c_str());
      meshlm::remote::test::write_tiny_model(model, 2048, 6, 8192, 32768);
    }
    fs::path cache = work / "cache";
    fs::remove_all(cache);
    for (int round = 0; round < 2; ++round) {
      auto counters = std::make_shared<remote::SyncCounters>();
      meshlm::remote::test::ThreadWorker w("bench", cache.string());
      remote::RemotePipelineOptions o;
      o.model_dir = model.string();
      o.peers = {w.address()};
      o.ranges = {{0, 2}, {2, 6}};
      o.secret = "bench";
      o.sync = remote::SyncMode::Always;
      o.sync_counters = counters;
      auto t0 = std::chrono::steady_clock::now();
      auto p = remote::make_remote_pipeline(o);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double mib = counters->tensor_bytes.load() / 1048576.0;
      std::printf(
          "%s: %.1f MiB sent in %.2f s of load (%.0f MiB/s including hashing on both "
          "sides and the stage loads)\n",
          round == 0 ? "empty cache" : "restart", mib, s, s > 0 ? mib / s : 0.0);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
