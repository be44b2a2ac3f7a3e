// What one tensor-parallel all-reduce costs on loopback TCP (issue 16): two ranks (this thread
// and a helper thread) in a transport::Group, all_reduce_sum of one activation row of hidden
// 1024 .. 12288 floats (a decode step's sub-layer) and of 16 rows (a short prompt chunk), as
// the group sends them by default (frames up to 32 KB on the caller's thread, larger ones
// through its sending thread) and with every frame through the sending thread. No compute between calls, so the time is the link, the wake-ups
// and the summation: the floor a sub-layer pays. Not a test.
//   build/bench/collective_bench [--benchmark_repetitions=3]
#include <benchmark/benchmark.h>

#include <future>
#include <memory>
#include <vector>

#include "transport/collective.h"
#include "transport/tcp_transport.h"

namespace {

using namespace meshlm::transport;

constexpr int kIterations = 4000;

void BM_AllReduceTwoRanks(benchmark::State& state) {
  const size_t n = size_t(state.range(0));
  const bool inline_sends = state.range(1) != 0;
  TcpListener listener("127.0.0.1:0");
  std::unique_ptr<Connection> to1 = tcp_connect(listener.address(), 10000);
  std::unique_ptr<Connection> to0 = listener.accept(10000);
  GroupOptions o;
  o.inline_small_sends = inline_sends;
  std::vector<std::unique_ptr<Connection>> p0(2), p1(2);
  p0[1] = std::move(to1);
  p1[0] = std::move(to0);
  const int64_t total = int64_t(state.max_iterations);
  auto rank1 = std::async(std::launch::async, [&, peers = std::move(p1)]() mutable {
    Group g(1, std::move(peers), o);
    std::vector<float> data(n, 0.5f);
    for (int64_t i = 0; i < total + 1; ++i) g.all_reduce_sum(data.data(), n);
  });
  Group g(0, std::move(p0), o);
  std::vector<float> data(n, 0.25f);
  g.all_reduce_sum(data.data(), n);  // connects the pair's buffers and threads
  for (auto _ : state) {
    g.all_reduce_sum(data.data(), n);
    benchmark::DoNotOptimize(data.data());
  }
  rank1.get();
  state.counters["bytes_sent"] = double(n * sizeof(float));
  state.SetLabel(inline_sends ? "default: <= 32 KB inline" : "all through the sending thread");
}

BENCHMARK(BM_AllReduceTwoRanks)
    ->ArgsProduct({{1024, 2048, 4096, 8192, 12288, 16 * 1024, 16 * 4096}, {1, 0}})
    ->Iterations(kIterations)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
