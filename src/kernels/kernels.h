// The compute kernels the forward pass is made of. Each has a scalar reference in kernels_ref.h
// (obvious, slow, the definition of "correct") and an optimised version declared here
// (Highway SIMD + the persistent thread pool) chosen at run time from the CPU's features.
//
// Determinism contract (tested in tests/kernels_parity_test.cpp): for matmul, the value of
// output (t, r) is bit-identical whatever n_tok and whatever the pool's thread count, so a
// sequence gets the same logits alone or batched with others, in one stage or many.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"
#include "formats/weight_format.h"

namespace meshlm::kernels {

// A weight matrix in any format (formats/weight_format.h).
using MatView = formats::WeightView;

// How matmul multiplies block-quantized weights (Q8_0, Q4_0, Q4_K, ...; F32/BF16/F16 ignore it).
enum class BlockMath : uint8_t {
  // Weight rows decoded to f32, then the f32 kernel: within ~1e-6 of the scalar reference
  // (relative to sum_k |W[r,k] x[t,k]|), at the cost of the decoding.
  kExact,
  // llama.cpp's way, for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K and MLX affine 4 / 8
  // bits (other block types take the kExact path): each token's x is quantized to 8 bits per block of 32 (K-quants: 256) once
  // per call, then integer dot products, scales in f32 (kernels_quant.h states the algorithm).
  // Error: each x[t,k] moves by at most amax/254 (amax: the largest |x| of its block), so
  // |y - exact| <= sum_k |W[r,k]| * amax_k / 254 (+ f32 rounding); measured 1-2e-4 of
  // sum_k |W[r,k] x[t,k]| on Gaussian activations, 7e-4 the largest. The determinism contract
  // holds, and the value is the same on every SIMD target.

  // BF16 weights, where bf16_dot_active(): x rounded to bf16, BF16 dot products (llama.cpp's
  // vec_dot_type for BF16; kernels_bf16.h states the algorithm): |y - exact| <= 2^-9
  // sum_k |W[r,k] x[t,k]|; the determinism contract holds. Elsewhere BF16 takes the f32 path.
  kQ8,
};

// y[t, r] = sum_k x[t, k] * W[r, k] (+ bias[r] when bias != nullptr), t < n_tok, r < w.rows.
// x: [n_tok, w.cols] f32, y: [n_tok, w.rows] f32 (y must not alias x).
void matmul(const MatView& w, const float* x, int64_t n_tok, float* y, const float* bias,
            ThreadPool& pool, BlockMath math = BlockMath::kExact);

// One output of matmul_multi: y[t, r] = x[t, :] . w[r, :] (+ bias[r]), y: [n_tok, w.rows].
struct MatmulOut {
  MatView w;
  float* y = nullptr;
  const float* bias = nullptr;  // may be null
};

// Several matmuls that read the same input x [n_tok, cols] (a layer's q/k/v, or gate/up): every
// output bit-identical to matmul(out.w, x, n_tok, out.y, out.bias, pool), but x is packed once and
// the pool forks and joins once for all of them, their rows taken from one shared counter. All
// w.cols must be equal; no y may alias x or another y.
void matmul_multi(const MatmulOut* outs, int n_outs, const float* x, int64_t n_tok,
                  ThreadPool& pool, BlockMath math = BlockMath::kExact);

// out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i], i < n. out may alias x.
void rmsnorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// Rotary embedding, Hugging Face convention (rotate_half): for each of n_heads heads of head_dim
// values, pairs (i, i + head_dim/2) for i < head_dim/2 are rotated by angle pos * inv_freq[i].
// x: [n_heads, head_dim] in place.
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq);

// In-place softmax over n values.
void softmax(float* x, int64_t n);

// out[i] = silu(gate[i]) * up[i] where silu(g) = g / (1 + exp(-g)). out may alias gate or up.
void silu_mul(const float* gate, const float* up, int64_t n, float* out);

// Attention of one query head over n_keys cached keys/values of its KV head (causal masking is
// the caller's: it passes only the keys the query may see).
//   q:   [head_dim]
//   k,v: key/value of position j: head_dim elements of type kv_type starting kv_row_bytes * j
//        bytes after k (v); kv_type is a KV cache type (kv_type_supported), a Q8_0 row is
//        blocks of 32 (head_dim a multiple of 32, and k/v at a block boundary)
//   out: [head_dim];  scratch: at least n_keys floats
// out = sum_j softmax_j(scale * q.k_j) v_j. A typed cache's keys and values are decoded exactly
// (formats::dequantize_row's values), and the result is bit-identical to the f32 kernel's over
// those decoded rows. Throws Error("kernels") for another type or a head_dim that is not whole
// blocks.
void attention_head(const float* q, const void* k, const void* v, int64_t kv_row_bytes,
                    WeightType kv_type, int64_t n_keys, int64_t head_dim, float scale, float* out,
                    float* scratch);
// An f32 cache whose positions are kv_stride floats apart.
inline void attention_head(const float* q, const float* k, const float* v, int64_t kv_stride,
                           int64_t n_keys, int64_t head_dim, float scale, float* out,
                           float* scratch) {
  attention_head(q, k, v, kv_stride * int64_t(sizeof(float)), WeightType::F32, n_keys, head_dim,
                 scale, out, scratch);
}

// attention_head for nq queries over the same keys and values (the query heads of one KV head for
// a run of tokens of one sequence): query i reads qs[i], sees keys [0, n_keys[i]) and writes
// outs[i]. Each key and value row is read once for several queries; every output is
// bit-identical to attention_head's. scratch: nq rows of scratch_stride >= max n_keys floats.
void attention_heads(const float* const* qs, float* const* outs, const int64_t* n_keys, int64_t nq,
                     const void* k, const void* v, int64_t kv_row_bytes, WeightType kv_type,
                     int64_t head_dim, float scale, float* scratch, int64_t scratch_stride);
inline void attention_heads(const float* const* qs, float* const* outs, const int64_t* n_keys,
                            int64_t nq, const float* k, const float* v, int64_t kv_stride,
                            int64_t head_dim, float scale, float* scratch,
                            int64_t scratch_stride) {
  attention_heads(qs, outs, n_keys, nq, k, v, kv_stride * int64_t(sizeof(float)), WeightType::F32,
                  head_dim, scale, scratch, scratch_stride);
}

// The types a KV cache may hold: F32, BF16, F16, Q8_0.
bool kv_type_supported(WeightType t);
// Throws Error("kernels") unless t is a KV cache type whose blocks divide head_dim.
void check_kv_type(WeightType t, int64_t head_dim);

// dst[i] += src[i]
void add_inplace(float* dst, const float* src, int64_t n);

// One row of an embedding table converted to f32: dst[0..cols) = W[row, :].
void embed_row(const MatView& w, int64_t row, float* dst);

// Whether BF16 weights multiply with BF16 dot products under BlockMath::kQ8 (kernels_bf16.h): the
// CPU has AVX512-BF16, the SIMD target chosen at run time is AVX-512, and the path is turned on
// (MESHLM_BF16_DOT=1 in the environment, read once; or simd_set_bf16_dot). Off by default.
bool bf16_dot_active();

// Name of the SIMD target chosen at run time (e.g. "AVX2", "AVX3", "NEON", "scalar").
const char* simd_target_name();

}  // namespace meshlm::kernels
