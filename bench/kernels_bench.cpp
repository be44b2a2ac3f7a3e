// Kernel micro-benchmarks (Google Benchmark). Counters (rates, shown as N/s): GB = bytes of weights
// streamed per second (weights read once per call), GFLOP = 2 * rows * cols * n_tok per second.
//   build-<you>/bench/kernels_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/half.h"
#include "core/thread_pool.h"
#include "formats/quants.h"
#include "formats/weight_format.h"
#include "kernels/kernels.h"

namespace meshlm::kernels {
namespace {

ThreadPool& pool_of(int n) {
  static std::unique_ptr<ThreadPool> pools[5];
  if (!pools[n]) pools[n] = std::make_unique<ThreadPool>(n);
  return *pools[n];
}

// Weights of one (dtype, rows, cols), in enough copies (up to ~256 MB together) that successive
// iterations stream from DRAM as a real model does, instead of finding a 25 MB matrix in L3.
// Only the most recent shape is kept.
struct WeightSet {
  std::tuple<int, int64_t, int64_t> key{-1, 0, 0};
  std::vector<std::vector<uint8_t>> copies;
};

const WeightSet& weights(WeightType dt, int64_t rows, int64_t cols) {
  static WeightSet set;
  const auto key = std::make_tuple(int(dt), rows, cols);
  if (set.key == key) return set;
  set.copies.clear();
  set.key = key;
  const size_t n = size_t(rows * cols), bytes = formats::tensor_bytes_or_throw(dt, std::array{rows, cols});
  const size_t n_copies = std::clamp<size_t>((size_t(256) << 20) / bytes, 1, 8);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
  for (size_t c = 0; c < n_copies; ++c) {
    std::vector<uint8_t> buf(bytes);
    for (size_t i = 0; i < n; ++i) {
      const float f = dist(rng);
      if (dt == WeightType::F32) {
        std::memcpy(buf.data() + 4 * i, &f, 4);
      } else {
        const uint16_t h = dt == WeightType::BF16 ? f32_to_bf16(f) : f32_to_f16(f);
        std::memcpy(buf.data() + 2 * i, &h, 2);
      }
    }
    set.copies.push_back(std::move(buf));
  }
  return set;
}

// Args: dtype, rows, cols, n_tok, threads.
void BM_Matmul(benchmark::State& state) {
  const auto dt = WeightType(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), n_tok = state.range(3);
  const int threads = int(state.range(4));
  const WeightSet& w = weights(dt, rows, cols);
  std::vector<float> x(size_t(n_tok * cols), 0.5f), y(size_t(n_tok * rows));
  ThreadPool& pool = pool_of(threads);
  size_t next = 0;
  for (auto _ : state) {
    const MatView view{w.copies[next].data(), dt, rows, cols};
    next = (next + 1) % w.copies.size();
    matmul(view, x.data(), n_tok, y.data(), nullptr, pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double iters = double(state.iterations());
  state.counters["GB"] =
      benchmark::Counter(iters * double(w.copies[0].size()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP"] = benchmark::Counter(
      iters * 2.0 * double(rows) * double(cols) * double(n_tok) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(formats::name(dt)) + " " + simd_target_name());
}

void MatmulArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"dtype", "rows", "cols", "n_tok", "threads"});
  for (int threads : {1, 2}) {
    for (int dt : {int(WeightType::BF16), int(WeightType::F32)}) {
      b->Args({dt, 6144, 2048, 1, threads});    // MLP gate/up of a 2048-wide model, decode
      b->Args({dt, 2048, 6144, 1, threads});    // MLP down, decode
      b->Args({dt, 6144, 2048, 128, threads});  // prompt processing
    }
    for (int dt : {int(WeightType::BF16), int(WeightType::F32)})
      for (int n_tok : {2, 4, 8, 16})  // batched decode (continuous batching, micro-batches)
        b->Args({dt, 6144, 2048, n_tok, threads});
    b->Args({int(WeightType::F16), 6144, 2048, 1, threads});
    for (int n_tok : {4, 16}) {  // the other shapes of a 1.7B-dims layer, and its LM head
      b->Args({int(WeightType::BF16), 2048, 2048, n_tok, threads});
      b->Args({int(WeightType::BF16), 1024, 2048, n_tok, threads});
      b->Args({int(WeightType::BF16), 2048, 6144, n_tok, threads});
      b->Args({int(WeightType::BF16), 151936, 2048, n_tok, threads});
    }
    b->Args({int(WeightType::BF16), 24, 512, 4, threads});  // cache-resident: the tile loop alone
    b->Args({int(WeightType::BF16), 24, 512, 16, threads});
    b->Args({int(WeightType::F32), 24, 512, 16, threads});
    b->Args({int(WeightType::BF16), 151936, 2048, 1, threads});  // LM head, decode
    b->Args({int(WeightType::BF16), 3072, 1024, 1, threads});    // 0.6B MLP gate/up, decode
    b->Args({int(WeightType::F32), 3072, 1024, 1, threads});
  }
}
BENCHMARK(BM_Matmul)->Apply(MatmulArgs)->UseRealTime()->Unit(benchmark::kMillisecond);

// Block-quantized weights of one (dtype, rows, cols): one matrix quantized by formats::quantize_row
// from random values, copied (like WeightSet) so that iterations stream from DRAM.
const WeightSet& quant_weights(WeightType dt, int64_t rows, int64_t cols) {
  static WeightSet set;
  const auto key = std::make_tuple(int(dt), rows, cols);
  if (set.key == key) return set;
  set.copies.clear();
  set.key = key;
  const size_t rb = formats::row_bytes(dt, cols), bytes = rb * size_t(rows);
  const size_t n_copies = std::clamp<size_t>((size_t(256) << 20) / bytes, 1, 8);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
  std::vector<float> src(static_cast<size_t>(cols));
  std::vector<uint8_t> first(bytes);
  for (int64_t r = 0; r < rows; ++r) {
    for (float& f : src) f = dist(rng);
    formats::quantize_row(dt, src.data(), cols, first.data() + size_t(r) * rb);
  }
  for (size_t c = 0; c < n_copies; ++c) set.copies.push_back(first);
  return set;
}

// Args: dtype, rows, cols, n_tok, threads, math (0 = BlockMath::kExact, 1 = kQ8). GB = bytes of
// (quantized) weights per second.
void BM_QuantMatmul(benchmark::State& state) {
  const auto dt = WeightType(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), n_tok = state.range(3);
  const int threads = int(state.range(4));
  const BlockMath math = state.range(5) ? BlockMath::kQ8 : BlockMath::kExact;
  const WeightSet& w = quant_weights(dt, rows, cols);
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(size_t(n_tok * cols)), y(size_t(n_tok * rows));
  for (float& f : x) f = dist(rng);
  ThreadPool& pool = pool_of(threads);
  size_t next = 0;
  for (auto _ : state) {
    const MatView view{w.copies[next].data(), dt, rows, cols};
    next = (next + 1) % w.copies.size();
    matmul(view, x.data(), n_tok, y.data(), nullptr, pool, math);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double iters = double(state.iterations());
  state.counters["GB"] =
      benchmark::Counter(iters * double(w.copies[0].size()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP"] = benchmark::Counter(
      iters * 2.0 * double(rows) * double(cols) * double(n_tok) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(formats::name(dt)) + (state.range(5) ? " q8 " : " exact ") +
                 simd_target_name());
}

void QuantMatmulArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"dtype", "rows", "cols", "n_tok", "threads", "q8"});
  const WeightType types[] = {WeightType::Q8_0, WeightType::Q4_0, WeightType::Q4_K,
                              WeightType::Q6_K, WeightType::Q5_K};
  for (int threads : {1, 2})
    for (WeightType t : types) {
      // Qwen3-0.6B gate/up, 1.7B gate/up and down: decode.
      b->Args({int(t), 3072, 1024, 1, threads, 1});
      b->Args({int(t), 6144, 2048, 1, threads, 1});
      b->Args({int(t), 2048, 6144, 1, threads, 1});
      b->Args({int(t), 6144, 2048, 1, threads, 0});  // the exact path (decode rows to f32)
      for (int n_tok : {4, 16, 128}) b->Args({int(t), 6144, 2048, n_tok, threads, 1});
      b->Args({int(t), 6144, 2048, 16, threads, 0});
      // Qwen3-30B-A3B's experts (gate/up 768x2048, down 2048x768) with the few tokens a batch
      // gives each expert.
      for (int n_tok : {1, 2, 4}) {
        b->Args({int(t), 768, 2048, n_tok, threads, 1});
        b->Args({int(t), 2048, 768, n_tok, threads, 1});
      }
    }
}
BENCHMARK(BM_QuantMatmul)->Apply(QuantMatmulArgs)->UseRealTime()->Unit(benchmark::kMillisecond);

// The memory roofline: one pass summing a 512 MB buffer (64-bit adds, 8 independent sums), split
// over the threads. GB = bytes read per second.
void BM_StreamRead(benchmark::State& state) {
  const int threads = int(state.range(0));
  static std::vector<uint64_t> buf((size_t(512) << 20) / 8, 1);
  ThreadPool& pool = pool_of(threads);
  std::vector<uint64_t> sums(size_t(threads) * 8);
  for (auto _ : state) {
    const int64_t n = int64_t(buf.size()) / 8;
    pool.parallel_for(n, [&](int64_t c0, int64_t c1, int th) {
      uint64_t s[8] = {};
      const uint64_t* p = buf.data();
      for (int64_t c = c0; c < c1; ++c)
        for (int j = 0; j < 8; ++j) s[j] += p[c * 8 + j];
      for (int j = 0; j < 8; ++j) sums[size_t(th) * 8 + size_t(j)] += s[j];
    });
    benchmark::DoNotOptimize(sums.data());
  }
  state.counters["GB"] = benchmark::Counter(double(state.iterations()) * double(buf.size() * 8) / 1e9,
                                            benchmark::Counter::kIsRate);
}
BENCHMARK(BM_StreamRead)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// The same with 256-bit loads (AVX2, four independent sums, two cache lines per step), the read
// rate a SIMD kernel can reach: the roofline the decode figures are reported against.
#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t sum_avx2(const uint64_t* p, int64_t n) {
  __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t i = 0; i + 16 <= n; i += 16) {
    s0 = _mm256_add_epi64(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    s1 = _mm256_add_epi64(s1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    s2 = _mm256_add_epi64(s2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    s3 = _mm256_add_epi64(s3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
  alignas(32) uint64_t v[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), s);
  return v[0] + v[1] + v[2] + v[3];
}

void BM_StreamReadSimd(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx2")) {
    state.SkipWithError("no AVX2");
    return;
  }
  const int threads = int(state.range(0));
  static std::vector<uint64_t> buf((size_t(512) << 20) / 8, 1);
  ThreadPool& pool = pool_of(threads);
  std::vector<uint64_t> sums(static_cast<size_t>(threads), 0);
  constexpr int64_t kLine = 16;  // uint64 per step (two cache lines)
  for (auto _ : state) {
    pool.parallel_for(int64_t(buf.size()) / kLine, [&](int64_t c0, int64_t c1, int th) {
      sums[size_t(th)] += sum_avx2(buf.data() + c0 * kLine, (c1 - c0) * kLine);
    });
    benchmark::DoNotOptimize(sums.data());
  }
  state.counters["GB"] = benchmark::Counter(double(state.iterations()) * double(buf.size() * 8) / 1e9,
                                            benchmark::Counter::kIsRate);
}
BENCHMARK(BM_StreamReadSimd)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
#endif

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
