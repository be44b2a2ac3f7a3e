// PLACEHOLDER: plain C++ versions of kernels.h until the Highway kernels land.
#include <cmath>

#include "kernels/kernels.h"
#include "kernels/kernels_ref.h"

namespace meshlm::kernels {

void matmul(const MatView& w, const float* x, int64_t n_tok, float* y, const float* bias,
            ThreadPool& pool) {
  pool.parallel_for(w.rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t t = 0; t < n_tok; ++t)
      for (int64_t r = r0; r < r1; ++r) {
        float acc = 0;
        const float* xr = x + t * w.cols;
        if (w.dtype == DType::F32) {
          const float* wr = static_cast<const float*>(w.data) + r * w.cols;
          for (int64_t k = 0; k < w.cols; ++k) acc += wr[k] * xr[k];
        } else {
          for (int64_t k = 0; k < w.cols; ++k) acc += ref::load(w.data, w.dtype, r * w.cols + k) * xr[k];
        }
        y[t * w.rows + r] = acc + (bias ? bias[r] : 0.f);
      }
  });
}
void rmsnorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  ref::rmsnorm(x, weight, n, eps, out);
}
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq) {
  ref::rope(x, n_heads, head_dim, pos, inv_freq);
}
void softmax(float* x, int64_t n) { ref::softmax(x, n); }
void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  ref::silu_mul(gate, up, n, out);
}
void attention_head(const float* q, const float* k, const float* v, int64_t kv_stride,
                    int64_t n_keys, int64_t head_dim, float scale, float* out, float* scratch) {
  ref::attention_head(q, k, v, kv_stride, n_keys, head_dim, scale, out);
}
void add_inplace(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}
void embed_row(const MatView& w, int64_t row, float* dst) { ref::embed_row(w, row, dst); }
const char* simd_target_name() { return "scalar-placeholder"; }

}  // namespace meshlm::kernels
