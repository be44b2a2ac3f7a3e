#include "kernels/kernels_ref.h"

#include <cmath>
#include <vector>

namespace meshlm::kernels::ref {

float load(const void* data, DType dtype, int64_t index) {
  switch (dtype) {
    case DType::F32: return static_cast<const float*>(data)[index];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(data)[index]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(data)[index]);
  }
  return 0.f;
}

void matmul(const MatView& w, const float* x, int64_t n_tok, float* y, const float* bias) {
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double acc = bias ? bias[r] : 0.0;
      for (int64_t k = 0; k < w.cols; ++k)
        acc += double(load(w.data, w.dtype, r * w.cols + k)) * double(x[t * w.cols + k]);
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
  for (int64_t k = 0; k < w.cols; ++k) dst[k] = load(w.data, w.dtype, row * w.cols + k);
}

}  // namespace meshlm::kernels::ref
