// Quantized-activation matmul for block-quantized weights (BlockMath::kQ8 in kernels.h): the
// activations of each token are quantized to 8-bit blocks once per matmul call, each weight block
// is multiplied with them in exact integer arithmetic, and the block scales are applied in f32 in
// one fixed order that does not depend on the SIMD target, the row tiling, n_tok or the threads.
//
// The algorithm (what every target computes, bit for bit; matmul_rows_model is its scalar
// statement and the portable path):
//
//  1. Token t's x is cut into activation blocks of 32 elements (legacy weight types: Q4_0, Q4_1,
//     Q5_0, Q5_1, Q8_0; MLX affine 4 and 8 bits) or 256 (K-quants: Q4_K, Q5_K, Q6_K), quantized
//     the way llama.cpp's CPU backend quantizes them on x86 (ggml's q8_0 / q8_1 and q8_K; its
//     quantize_row_q8_0 / _q8_1 SIMD and quantize_row_q8_K_ref), so that meshlm's integers and
//     scales are ggml's, bit for bit, wherever ggml's are finite. amax = max |x| of the block.
//     32 (q8_0 / q8_1): id = 127 / amax, q = nearbyint(x * id); d_f32 = amax / 127 and
//       d = d_f32 rounded to f16 (ggml stores it so); per block sx = d_f32 * float(sum of its
//       codes) rounded to f16 (q8_1's s). Where the f16 rounding overflows (amax > ~8.3e6 for d,
//       |sx| > 65504), the f32 value is kept: ggml's would be inf.
//     256 (q8_K): mx = the first x of the block with |x| == amax (its sign kept), iscale =
//       -127 / mx, q = nearbyint(iscale * x), d = 1 / iscale (so d < 0 when mx > 0; q * d ~ x).
//     Both: the codes clamped to [-127, 127] (never active: |x * id| <= 127 (1 + 2^-23)^2); a
//     block whose scale overflows (id or iscale inf: amax == 0 or amax < 127 / FLT_MAX) is all
//     zero (codes, d, d_f32, sx); an inf or NaN makes d (d_f32, sx) NaN and the codes 0. And the
//     sum of the codes of every 32-element chunk.
//     Where ggml picks mx differently: its 4-row q8_K (the repacked Q4_K kernels' prefill) takes
//     +amax when both +amax and -amax occur; meshlm always takes the first.
//  2. A row is a sequence of 32-element chunks c. Accumulator lane L = 8 * (c % 2) + i (16 f32
//     lanes) takes the elements 4i..4i+3 of chunk c, i < 8.
//     Legacy weight block b (= chunk c; dx its activation d): p_i = sum of w_j * q_j over those 4
//       elements, in integers, w_j the block's integer level with its offset applied (Q4_0:
//       nibble - 8, Q5_0: q5 - 16, Q8_0: the int8, Q4_1 / Q5_1: the raw level), then
//       acc[L] = acc[L] + float(p_i) * (dw * dx).
//     Q4_1 / Q5_1 take ggml's own order (ggml_vec_dot_q4_1_q8_1 / _q5_1_q8_1 on x86, so that their
//       results are llama.cpp's bit for bit): every block goes to lanes 0-7 (i, whatever c),
//       acc[i] = fma(float(p_i), dw * dx, acc[i]), and off = fma(m, sx, off), block after block.
//     K-quant super-block b: P[L] = sum over its chunks c of sub-scale(c, i) * p_{c,i} in integers
//       (Q6_K: w = q6 - 32 and a sub-scale per 16 elements), then acc[L] += float(P[L]) * (d * dx)
//       for all 16 lanes, once per super-block. Q6_K takes ggml's order (ggml_vec_dot_q6_K_q8_K):
//       acc[i] = fma(float(P[i] + P[i + 8]), d * dx, acc[i]), lanes 0-7.
//     MLX affine 4 / 8 bits (formats/mlx_affine.h; any group size G = 32, 64, 128 and scale dtype):
//       each 32-element chunk c is a legacy block whose d and m are its group's scale s and
//       minimum m, and whose activation scale is d_f32 (no f16 rounding: MLX's own forward is
//       f32): acc[L] += float(p_i) * (s * dx_c), dx_c = d_f32 of chunk c. 4 bits: w_j = the code
//       (0..15), m = bias; 8 bits: w_j = code - 128 (stored so, int8), m = bias + s * 128 (one f32
//       mul + add).
//     The other types with a minimum add one scalar term per block, in block order, to `off`:
//       MLX 4 / 8: off += float(sum of chunk c's activation codes) * (m * dx_c), per chunk;
//       Q4_K / Q5_K: off += float(sum_c min_c * codesum_c) * -(dmin * dx).
//  3. y = s8 + ... reduced in the fixed tree s8[i] = acc[i] + acc[i+8] (Q4_1 / Q5_1 / Q6_K:
//     s8[i] = acc[i], ggml's hsum_float_8), s4[i] = s8[i] + s8[i+4], s2[i] = s4[i] + s4[i+2],
//     s = s2[0] + s2[1]; then s + off (types with a minimum), then + bias.
//  Every f32 operation above is one IEEE operation (the files are compiled with
//  -ffp-contract=off; the only fused multiply-adds are Q4_1 / Q5_1 / Q6_K's explicit fma), so
//  every target that gets the integers right gets the same bits. The integers are exact: no int16
//  intermediate can saturate (|level| <= 63 for the unsigned forms, pairs of products
//  <= 2 * 63 * 127), and int32 sums stay below 2^28.
#pragma once

#include <cstdint>
#include <vector>

#include "formats/weight_format.h"

namespace meshlm::kernels::quant {

// Activation block size (elements) a weight type's kernel reads: 32 (legacy), 256 (K-quants), or
// 0 when the type has no quantized-activation kernel (it keeps the f32 path).
int64_t activation_block(WeightType t);

// Token-major quantized activations (step 1 above), a view.
struct QuantizedX {
  int64_t cols = 0;
  int64_t block = 0;             // 32 or 256
  const int8_t* q = nullptr;     // [n_tok][cols]
  const float* d = nullptr;      // [n_tok][cols / block]
  const float* d_f32 = nullptr;  // block 32: [n_tok][cols / 32], amax / 127 unrounded (MLX)
  const float* sx = nullptr;     // block 32: [n_tok][cols / 32], q8_1's s (Q4_1 / Q5_1)
  const int32_t* sums = nullptr; // [n_tok][cols / 32]
  const int16_t* sums16 = nullptr;  // the same as int16 (|sum| <= 32 * 127)
  const int8_t* q_at(int64_t t) const { return q + t * cols; }
  const int16_t* sums16_at(int64_t t) const { return sums16 + t * (cols / 32); }
  const float* d_at(int64_t t) const { return d + t * (cols / block); }
  const float* d_f32_at(int64_t t) const { return d_f32 + t * (cols / 32); }
  const float* sx_at(int64_t t) const { return sx + t * (cols / 32); }
  const int32_t* sums_at(int64_t t) const { return sums + t * (cols / 32); }
};

// Owner of the quantized activations of one call (cols a multiple of block).
class QuantizedXBuffer {
 public:
  void quantize(const float* x, int64_t n_tok, int64_t cols, int64_t block);
  QuantizedX view() const { return view_; }

 private:
  std::vector<int8_t> q_;
  std::vector<float> d_, d_f32_, sx_;
  std::vector<int32_t> sums_;
  std::vector<int16_t> sums16_;
  QuantizedX view_;
};

// One token: q[cols], d[cols / block], sums[cols / 32] and, for block 32 only, d_f32[cols / 32]
// and sx[cols / 32] (null for 256) from x[cols]. The scalar statement of step 1; quantize_tokens
// is the same for n_tok tokens, bit for bit, in SIMD where the target has it (QuantizedXBuffer
// uses it). block: 32 or 256.
void quantize_activations(const float* x, int64_t cols, int64_t block, int8_t* q, float* d,
                          int32_t* sums, float* d_f32, float* sx);
void quantize_tokens(const float* x, int64_t n_tok, int64_t cols, int64_t block, int8_t* q,
                     float* d, int32_t* sums, float* d_f32, float* sx);

// The algorithm above, scalar: y[t * w.rows + r] for rows [r0, r1) and tokens [0, n_tok) of
// quantized activations xq (xq.block == activation_block(w.dtype)).
void matmul_rows_model(const formats::WeightView& w, const QuantizedX& xq, int64_t n_tok,
                       float* y, const float* bias, int64_t r0, int64_t r1);

// Highway target bits this file's kernels are built for, best first: simd_built_targets() plus
// AVX3_DL (AVX-512 VNNI), which only the quantized kernels use. Tests force each one the CPU
// supports (simd_force_target) and skip the others.
std::vector<int64_t> built_targets();

// Rows [r0, r1): the fastest path of the SIMD target chosen at run time (Highway dispatch;
// AVX2, AVX-512, AVX-512 VNNI and NEON have their own, the other targets run the scalar model).
void matmul_rows(const formats::WeightView& w, const QuantizedX& xq, int64_t n_tok, float* y,
                 const float* bias, int64_t r0, int64_t r1);

}  // namespace meshlm::kernels::quant
