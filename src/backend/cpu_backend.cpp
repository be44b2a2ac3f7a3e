// The cpu backend: the optimised kernels (Highway SIMD, chosen at run time) on a persistent
// thread pool.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/backend.h"
#include "backend/host_memory.h"
#include "backend/host_backends.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"

namespace meshlm::backend {

namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads) {}

  std::string_view name() const override { return "cpu"; }
  std::string describe() const override {
    return "cpu (" + std::string(kernels::simd_target_name()) + ", " + std::to_string(pool_.size()) +
           (pool_.size() == 1 ? " thread)" : " threads)");
  }
  int threads() const override { return pool_.size(); }

  Buffer alloc(size_t n) override { return host_alloc(n); }
  Buffer reserve(size_t n) override { return host_reserve(n); }
  void will_write(float* dst, size_t n) override { host_will_write(dst, n); }
  void upload(float* dst, const float* host, size_t n) override { copy(dst, host, n); }
  void download(float* host, const float* src, size_t n) override { copy(host, src, n); }
  void copy(float* dst, const float* src, size_t n) override {
    if (n) std::memmove(dst, src, n * sizeof(float));
  }
  void store_kv(void* dst, WeightType type, const float* src, int64_t n) override {
    store_kv_host(dst, type, src, n);
  }

  void matmul(std::span<const MatmulOut> outs, const float* x, int64_t n_tok) override {
    // backend::MatmulOut and kernels::MatmulOut are the same three fields.
    thread_local std::vector<kernels::MatmulOut> k;
    k.clear();
    for (const MatmulOut& o : outs) k.push_back({o.w, o.y, o.bias});
    // Block-quantized weights with a kernel of their own multiply activations quantized to 8
    // bits per block (as llama.cpp does): integer dots, still batch- and thread-invariant.
    kernels::matmul_multi(k.data(), int(k.size()), x, n_tok, pool_, kernels::BlockMath::kQ8);
  }

  void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t n, float eps,
               float* out) override {
    for (int64_t r = 0; r < rows; ++r) kernels::rmsnorm(x + r * n, weight, n, eps, out + r * n);
  }

  void rope(float* x, int64_t n_tok, int64_t n_heads, int64_t head_dim, const int64_t* pos,
            const float* inv_freq, RopeStyle style) override {
    if (style == RopeStyle::Interleaved)
      return rope_interleaved_host(x, n_tok, n_heads, head_dim, pos, inv_freq);
    for (int64_t t = 0; t < n_tok; ++t)
      kernels::rope(x + t * n_heads * head_dim, n_heads, head_dim, pos[t], inv_freq);
  }

  void attention(const float* q, int64_t n_tok, const AttentionKeys* keys, const AttentionShape& s,
                 float* out) override {
    const int64_t hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
    const int64_t rb = s.row_bytes(), q_stride = s.n_heads * hd;
    const size_t head_bytes = formats::row_bytes(s.kv_type, hd);  // a head's share of a row
    int64_t longest = 0;
    for (int64_t t = 0; t < n_tok; ++t) longest = std::max(longest, keys[t].n_keys);
    // Runs of up to kRun consecutive tokens that read the same keys (a sequence's prefill chunk):
    // each task is one KV head for one run, its group of query heads for every token of the run
    // together, so that the run's keys and values are read once for all of them
    // (kernels::attention_heads; the same bits as one query at a time).
    constexpr int64_t kRun = 4;
    runs_.clear();
    for (int64_t t = 0; t < n_tok;) {
      int64_t e = t + 1;
      while (e < n_tok && e - t < kRun && keys[e].k == keys[t].k && keys[e].v == keys[t].v) ++e;
      runs_.push_back({t, e});
      t = e;
    }
    const int64_t max_q = kRun * group;
    const size_t need = size_t(pool_.size()) * size_t(max_q) * size_t(longest);
    if (scratch_.size() < need) scratch_.resize(need);
    // Tasks cost different amounts (sequences at different positions), so they are taken from a
    // shared counter rather than split evenly.
    const int64_t n_tasks = int64_t(runs_.size()) * s.n_kv_heads;
    pool_.parallel_chunks(n_tasks, 1, [&](int64_t i0, int64_t i1, int thread) {
      float* sc = scratch_.data() + size_t(thread) * size_t(max_q) * size_t(longest);
      const float* qs[kRun * 64];
      float* outs[kRun * 64];
      int64_t n_keys[kRun * 64];
      for (int64_t i = i0; i < i1; ++i) {
        const auto [t0, t1] = runs_[size_t(i / s.n_kv_heads)];
        const int64_t kvh = i % s.n_kv_heads;
        const AttentionKeys& kt = keys[t0];
        const void* kh = static_cast<const uint8_t*>(kt.k) + size_t(kvh) * head_bytes;
        const void* vh = static_cast<const uint8_t*>(kt.v) + size_t(kvh) * head_bytes;
        if (group > 64) {  // not a real model's grouping: one query at a time
          for (int64_t t = t0; t < t1; ++t)
            for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h)
              kernels::attention_head(q + t * q_stride + h * hd, kh, vh, rb, s.kv_type,
                                      keys[t].n_keys, hd, s.scale, out + t * q_stride + h * hd, sc);
          continue;
        }
        int64_t nq = 0;
        for (int64_t t = t0; t < t1; ++t)
          for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h, ++nq) {
            qs[nq] = q + t * q_stride + h * hd;
            outs[nq] = out + t * q_stride + h * hd;
            n_keys[nq] = keys[t].n_keys;
          }
        kernels::attention_heads(qs, outs, n_keys, nq, kh, vh, rb, s.kv_type, hd, s.scale, sc,
                                 longest);
      }
    });
  }

  void silu_mul(const float* gate, const float* up, int64_t n, float* out) override {
    kernels::silu_mul(gate, up, n, out);
  }
  void add(float* dst, const float* src, int64_t n) override { kernels::add_inplace(dst, src, n); }
  void add_scaled(float* dst, const float* src, float scale, int64_t n) override {
    add_scaled_host(dst, src, scale, n);  // T x top-k x hidden values a layer: no SIMD kernel needed
  }
  void embed(const WeightView& table, const int32_t* ids, int64_t n, float* out) override {
    for (int64_t i = 0; i < n; ++i) kernels::embed_row(table, ids[i], out + i * table.cols);
  }

 private:
  ThreadPool pool_;
  std::vector<float> scratch_;  // [threads, queries per task, longest key run] attention scores
  std::vector<std::pair<int64_t, int64_t>> runs_;  // attention: token runs reading the same keys
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace meshlm::backend
