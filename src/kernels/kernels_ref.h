// Scalar reference kernels: the obvious loops, double accumulation where it keeps them simple and
// accurate. Every optimised kernel in kernels.h is tested against these.
#pragma once

#include "kernels/kernels.h"

namespace meshlm::kernels::ref {

void matmul(const MatView& w, const float* x, int64_t n_tok, float* y, const float* bias);
void rmsnorm(const float* x, const float* weight, int64_t n, float eps, float* out);
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq);
void softmax(float* x, int64_t n);
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
void attention_head(const float* q, const float* k, const float* v, int64_t kv_stride,
                    int64_t n_keys, int64_t head_dim, float scale, float* out);
void embed_row(const MatView& w, int64_t row, float* dst);

}  // namespace meshlm::kernels::ref
