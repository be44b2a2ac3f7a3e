// Kernel micro-benchmarks (Google Benchmark). Counters (rates, shown as N/s): GB = bytes of weights
// streamed per second (weights read once per call), GFLOP = 2 * rows * cols * n_tok per second.
//   build-<you>/bench/kernels_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"

namespace meshlm::kernels {
namespace {

ThreadPool& pool_of(int n) {
  static std::unique_ptr<ThreadPool> pools[5];
  if (!pools[n]) pools[n] = std::make_unique<ThreadPool>(n);
  return *pools[n];
}

// One weight buffer per (dtype, rows, cols), filled with small random values.
const std::vector<uint8_t>& weights(DType dt, int64_t rows, int64_t cols) {
  static std::vector<std::pair<std::tuple<int, int64_t, int64_t>, std::vector<uint8_t>>> cache;
  auto key = std::make_tuple(int(dt), rows, cols);
  for (auto& [k, v] : cache)
    if (k == key) return v;
  std::vector<uint8_t> bytes(size_t(rows * cols) * dtype_size(dt));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
  for (size_t i = 0; i < size_t(rows * cols); ++i) {
    float f = dist(rng);
    if (dt == DType::F32) {
      reinterpret_cast<float*>(bytes.data())[i] = f;
    } else {
      reinterpret_cast<uint16_t*>(bytes.data())[i] =
          dt == DType::BF16 ? f32_to_bf16(f) : f32_to_f16(f);
    }
  }
  cache.emplace_back(key, std::move(bytes));
  return cache.back().second;
}

// Args: dtype, rows, cols, n_tok, threads.
void BM_Matmul(benchmark::State& state) {
  const auto dt = DType(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), n_tok = state.range(3);
  const int threads = int(state.range(4));
  const auto& w = weights(dt, rows, cols);
  std::vector<float> x(size_t(n_tok * cols), 0.5f), y(size_t(n_tok * rows));
  const MatView view{w.data(), dt, rows, cols};
  ThreadPool& pool = pool_of(threads);
  for (auto _ : state) {
    matmul(view, x.data(), n_tok, y.data(), nullptr, pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double iters = double(state.iterations());
  state.counters["GB"] =
      benchmark::Counter(iters * double(w.size()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP"] = benchmark::Counter(
      iters * 2.0 * double(rows) * double(cols) * double(n_tok) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(dtype_name(dt)) + " " + simd_target_name());
}

void MatmulArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"dtype", "rows", "cols", "n_tok", "threads"});
  for (int threads : {1, 2}) {
    for (int dt : {int(DType::BF16), int(DType::F32)}) {
      b->Args({dt, 6144, 2048, 1, threads});    // MLP gate/up of a 2048-wide model, decode
      b->Args({dt, 2048, 6144, 1, threads});    // MLP down, decode
      b->Args({dt, 6144, 2048, 128, threads});  // prompt processing
    }
    b->Args({int(DType::F16), 6144, 2048, 1, threads});
    b->Args({int(DType::BF16), 151936, 2048, 1, threads});  // LM head, decode
  }
}
BENCHMARK(BM_Matmul)->Apply(MatmulArgs)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_AttentionHead(benchmark::State& state) {
  const int64_t n_keys = state.range(0), head_dim = 128, stride = 8 * head_dim;
  std::vector<float> q(head_dim, 0.1f), kv(size_t(n_keys * stride), 0.01f), out(head_dim),
      scratch(static_cast<size_t>(n_keys));
  for (auto _ : state) {
    attention_head(q.data(), kv.data(), kv.data() + head_dim, stride, n_keys, head_dim, 0.088f,
                   out.data(), scratch.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * n_keys);
}
BENCHMARK(BM_AttentionHead)->Arg(512)->Arg(8192)->Unit(benchmark::kMicrosecond);

void BM_Softmax(benchmark::State& state) {
  std::vector<float> x(size_t(state.range(0)));
  for (auto _ : state) {
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(i % 97) * 0.1f;
    softmax(x.data(), int64_t(x.size()));
    benchmark::DoNotOptimize(x.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Softmax)->Arg(151936)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace meshlm::kernels

BENCHMARK_MAIN();
