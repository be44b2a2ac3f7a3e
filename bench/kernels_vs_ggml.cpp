// meshlm's quantized matmul (BlockMath::kQ8) against llama.cpp's CPU kernels, one thread, decode
// (n_tok = 1). Built only with -DMESHLM_GGML_DIR=<llama.cpp tree with build/bin/libggml-cpu.so>:
//   build/bench/kernels_vs_ggml
// ggml's side is its decode path: the vec_dot type's from_float once, then vec_dot per row,
// as ggml_mul_mat does for one token.
// Timed A B A B per shape; wall and thread CPU time (the machine is shared: CPU time is what
// the kernel itself costs, wall what it got).
#include <ctime>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
#include <algorithm>
#include <cmath>
#include "ggml.h"
#include "ggml-cpu.h"
#include "core/thread_pool.h"
#include "formats/weight_format.h"
#include "formats/quants.h"
#include "kernels/kernels.h"
using namespace meshlm;
static double cpu_now() { timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static double wall_now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main() {
  ggml_cpu_init();
  struct T { WeightType mt; ggml_type gt; const char* name; };
  const T types[] = {{WeightType::Q8_0, GGML_TYPE_Q8_0, "Q8_0"}, {WeightType::Q4_0, GGML_TYPE_Q4_0, "Q4_0"},
                     {WeightType::Q4_K, GGML_TYPE_Q4_K, "Q4_K"}, {WeightType::Q6_K, GGML_TYPE_Q6_K, "Q6_K"},
                     {WeightType::Q5_K, GGML_TYPE_Q5_K, "Q5_K"}};
  struct S { int64_t rows, cols; };
  const S shapes[] = {{3072, 1024}, {6144, 2048}, {2048, 6144}};
  ThreadPool pool(1);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
  printf("%-5s %-10s %12s %12s %12s %12s  (GB/s of weights; min over reps; cpu = thread CPU time)\n", "type", "shape", "meshlm wall", "ggml wall", "meshlm cpu", "ggml cpu");
  for (const T& t : types)
    for (const S& s : shapes) {
      const size_t rb = formats::row_bytes(t.mt, s.cols), bytes = rb * s.rows;
      std::vector<float> src(size_t(s.rows * s.cols));
      for (float& f : src) f = dist(rng);
      std::vector<uint8_t> w0(bytes);
      for (int64_t r = 0; r < s.rows; ++r) formats::quantize_row(t.mt, src.data() + r * s.cols, s.cols, w0.data() + r * rb);
      const int copies = int(std::clamp<size_t>((size_t(256) << 20) / bytes, 1, 16));
      std::vector<std::vector<uint8_t>> w(copies, w0);
      std::vector<float> x(s.cols), y(s.rows), y2(s.rows);
      for (float& f : x) f = dist(rng) * 20;
      const auto* tr = ggml_get_type_traits_cpu(t.gt);
      const auto* tr_x = ggml_get_type_traits(tr->vec_dot_type);
      std::vector<uint8_t> xq(size_t(s.cols / tr_x->blck_size) * tr_x->type_size);
      double best[4] = {1e9, 1e9, 1e9, 1e9};
      int next = 0;
      for (int rep = 0; rep < 6; ++rep) {
        for (int side = 0; side < 2; ++side) {
          const int iters = 20;
          const double w0t = wall_now(), c0t = cpu_now();
          for (int it = 0; it < iters; ++it) {
            const uint8_t* wd = w[next].data(); next = (next + 1) % copies;
            if (side == 0) {
              kernels::matmul(kernels::MatView{wd, t.mt, s.rows, s.cols}, x.data(), 1, y.data(), nullptr, pool, kernels::BlockMath::kQ8);
            } else {
              ggml_get_type_traits_cpu(tr->vec_dot_type)->from_float(x.data(), xq.data(), s.cols);
              for (int64_t r = 0; r < s.rows; ++r) tr->vec_dot(int(s.cols), &y2[r], 0, wd + r * rb, 0, xq.data(), 0, 1);
            }
          }
          best[side] = std::min(best[side], (wall_now() - w0t) / iters);
          best[2 + side] = std::min(best[2 + side], (cpu_now() - c0t) / iters);
        }
      }
      double maxrel = 0, mag = 0;
      for (int64_t r = 0; r < s.rows; ++r) { maxrel = std::max(maxrel, double(std::fabs(y[r] - y2[r]))); mag = std::max(mag, double(std::fabs(y2[r]))); }
      char shape[48]; snprintf(shape, sizeof shape, "%ldx%ld", long(s.rows), long(s.cols));
      printf("%-5s %-10s %12.2f %12.2f %12.2f %12.2f  max|y-y_ggml|/max|y_ggml| %.1e\n", t.name, shape, bytes / best[0] / 1e9, bytes / best[1] / 1e9,
             bytes / best[2] / 1e9, bytes / best[3] / 1e9, maxrel / mag);
      fflush(stdout);
    }
}
