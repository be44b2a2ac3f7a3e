#include "kernels/kernels_ref.h"

#include <cmath>
#include <vector>

namespace meshlm::kernels::ref {

// Row r of w as f32: the format's own dequantization (the reference for every format).
static void dequantize_row(const MatView& w, int64_t r, float* dst) {
  const size_t stride = formats::row_bytes(w.dtype, w.cols);
  formats::dequantize_row(w.dtype, static_cast<const uint8_t*>(w.data) + size_t(r) * stride,
                          w.cols, dst);
}

void matmul(const MatView& w, const float* x, int64_t n_tok, float* y, const float* bias) {
  std::vector<float> row(size_t(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(w, r, row.data());
    for (int64_t t = 0; t < n_tok; ++t) {
      double acc = bias ? bias[r] : 0.0;
      for (int64_t k = 0; k < w.cols; ++k) acc += double(row[size_t(k)]) * double(x[t * w.cols + k]);
      y[t * w.rows + r] = float(acc);
    }
  }
}

void rmsnorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  double inv = 1.0 / std::sqrt(ss / double(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = float(x[i] * inv) * weight[i];
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq) {
  int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      float angle = float(pos) * inv_freq[i];
      float c = std::cos(angle), s = std::sin(angle);
      float a = v[i], b = v[i + half];
      v[i] = a * c - b * s;
      v[i + half] = b * c + a * s;
    }
  }
}

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  for (int64_t i = 0; i < n; ++i) x[i] = float(x[i] / sum);
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void attention_head(const float* q, const float* k, const float* v, int64_t kv_stride,
                    int64_t n_keys, int64_t head_dim, float scale, float* out) {
  std::vector<float> p(static_cast<size_t>(n_keys));
  for (int64_t j = 0; j < n_keys; ++j) {
    double dot = 0;
    for (int64_t d = 0; d < head_dim; ++d) dot += double(q[d]) * k[j * kv_stride + d];
    p[size_t(j)] = float(dot) * scale;
  }
  softmax(p.data(), n_keys);
  for (int64_t d = 0; d < head_dim; ++d) {
    double acc = 0;
    for (int64_t j = 0; j < n_keys; ++j) acc += double(p[size_t(j)]) * v[j * kv_stride + d];
    out[d] = float(acc);
  }
}

void embed_row(const MatView& w, int64_t row, float* dst) {
  dequantize_row(w, row, dst);
}

}  // namespace meshlm::kernels::ref
