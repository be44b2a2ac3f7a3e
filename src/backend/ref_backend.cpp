// The ref backend: the scalar reference kernels (kernels/kernels_ref.h) on the calling thread.
// Slow and obvious on purpose: it is the oracle the cpu backend's model tests compare with, and
// the proof that model/ computes through the backend interface alone.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/backend.h"
#include "backend/host_memory.h"
#include "backend/host_backends.h"
#include "kernels/kernels.h"
#include "kernels/kernels_ref.h"
#include "formats/weight_format.h"

namespace meshlm::backend {

namespace {

class RefBackend final : public Backend {
 public:
  std::string_view name() const override { return "ref"; }
  std::string describe() const override { return "ref (scalar reference kernels, 1 thread)"; }
  int threads() const override { return 1; }

  Buffer alloc(size_t n) override { return host_alloc(n); }
  Buffer reserve(size_t n) override { return host_reserve(n); }
  void will_write(float* dst, size_t n) override { host_will_write(dst, n); }
  void upload(float* dst, const float* host, size_t n) override { copy(dst, host, n); }
  void download(float* host, const float* src, size_t n) override { copy(host, src, n); }
  void copy(float* dst, const float* src, size_t n) override {
    for (size_t i = 0; i < n; ++i) dst[i] = src[i];
  }
  void store_kv(void* dst, WeightType type, const float* src, int64_t n) override {
    store_kv_host(dst, type, src, n);
  }

  void matmul(std::span<const MatmulOut> outs, const float* x, int64_t n_tok) override {
    for (const MatmulOut& o : outs) kernels::ref::matmul(o.w, x, n_tok, o.y, o.bias);
  }
  void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t n, float eps,
               float* out) override {
    for (int64_t r = 0; r < rows; ++r) kernels::ref::rmsnorm(x + r * n, weight, n, eps, out + r * n);
  }
  void rope(float* x, int64_t n_tok, int64_t n_heads, int64_t head_dim, const int64_t* pos,
            const float* inv_freq, RopeStyle style) override {
    if (style == RopeStyle::Interleaved)
      return rope_interleaved_host(x, n_tok, n_heads, head_dim, pos, inv_freq);
    for (int64_t t = 0; t < n_tok; ++t)
      kernels::ref::rope(x + t * n_heads * head_dim, n_heads, head_dim, pos[t], inv_freq);
  }
  void attention(const float* q, int64_t n_tok, const AttentionKeys* keys, const AttentionShape& s,
                 float* out) override {
    const int64_t hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
    const int64_t kv_dim = s.n_kv_heads * hd, q_stride = s.n_heads * hd, rb = s.row_bytes();
    kernels::check_kv_type(s.kv_type, hd);
    for (int64_t t = 0; t < n_tok; ++t) {
      // The token's keys and values decoded to f32 (exact for every cache type), then the
      // reference over them.
      const int64_t n = keys[t].n_keys;
      dk_.resize(size_t(std::max<int64_t>(n, 1) * kv_dim));
      dv_.resize(dk_.size());
      for (int64_t j = 0; j < n; ++j) {
        formats::dequantize_row(s.kv_type, static_cast<const uint8_t*>(keys[t].k) + j * rb, kv_dim,
                                dk_.data() + j * kv_dim);
        formats::dequantize_row(s.kv_type, static_cast<const uint8_t*>(keys[t].v) + j * rb, kv_dim,
                                dv_.data() + j * kv_dim);
      }
      for (int64_t h = 0; h < s.n_heads; ++h)
        kernels::ref::attention_head(q + t * q_stride + h * hd, dk_.data() + (h / group) * hd,
                                     dv_.data() + (h / group) * hd, kv_dim, n, hd, s.scale,
                                     out + t * q_stride + h * hd);
    }
  }
  void silu_mul(const float* gate, const float* up, int64_t n, float* out) override {
    kernels::ref::silu_mul(gate, up, n, out);
  }
  void add(float* dst, const float* src, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
  }
  void add_scaled(float* dst, const float* src, float scale, int64_t n) override {
    add_scaled_host(dst, src, scale, n);
  }
  void embed(const WeightView& table, const int32_t* ids, int64_t n, float* out) override {
    for (int64_t i = 0; i < n; ++i) kernels::ref::embed_row(table, ids[i], out + i * table.cols);
  }
 private:
  std::vector<float> dk_, dv_;  // attention: one token's keys and values decoded
};

}  // namespace

void rope_interleaved_host(float* x, int64_t n_tok, int64_t n_heads, int64_t head_dim,
                           const int64_t* pos, const float* inv_freq) {
  const int64_t half = head_dim / 2;
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float angle = float(pos[t]) * inv_freq[i];
        const float c = std::cos(angle), s = std::sin(angle);
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * c - b * s;
        v[2 * i + 1] = b * c + a * s;
      }
    }
}

std::unique_ptr<Backend> make_ref_backend() { return std::make_unique<RefBackend>(); }

}  // namespace meshlm::backend
