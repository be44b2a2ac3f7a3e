// BF16 dot products for BF16 weights (llama.cpp's way: its vec_dot_type for BF16 is BF16), on CPUs
// with AVX512-BF16 (vdpbf16ps). Used by matmul / matmul_multi under BlockMath::kQ8 (the engine's
// mode) when bf16_dot_active(); everywhere else BF16 weights take the f32 path of kernels_matmul.
//
// The algorithm, for output (t, r) of x [n_tok, cols] f32 and W [rows, cols] bf16:
//  1. Each token's x is rounded to bf16 once, as vcvtne2ps2bf16 does (bf16_round below): round to
//     nearest even; a NaN is quieted (bit 6 set); a zero or subnormal f32 becomes a zero of its
//     sign. Rows are zero-padded to bf16_x_stride(cols) elements (a multiple of 32).
//  2. One accumulator of 16 f32 lanes, zero to start. Chunk c (elements 32c .. 32c+31, the last
//     chunk zero-padded, weights and x alike) adds into lane i, in this order:
//        lane = fma(W[32c+2i+1], x[32c+2i+1], lane)   then
//        lane = fma(W[32c+2i],   x[32c+2i],   lane)
//     each fma rounding once (nearest even), with its three inputs' subnormals taken as zeros of
//     their sign and a subnormal result flushed to a zero of its sign: vdpbf16ps's definition
//     (Intel SDM: "FP32 FMA with daz in, ftz out and RNE rounding"). Checked on AMD Zen 5
//     (3.2M random lanes incl. subnormal accumulators, inputs and results: all bit-identical;
//     see BENCHMARKS.md), chunks in increasing column order.
//  3. The lanes are summed by a fixed tree of ordinary f32 adds:
//        a[i] = l[i] + l[i+8] (i < 8), b[i] = a[i] + a[i+4] (i < 4), c[i] = b[i] + b[i+2] (i < 2),
//        s = c[0] + c[1];   y = s + (bias ? bias[r] : 0).
// The value of an output therefore depends only on W[r, :], x[t, :] and bias[r]: not on n_tok,
// the tile shape, the panel or the thread (the determinism contract of kernels.h). It is the same
// on every CPU that runs this path. matmul_rows_bf16_model is the statement in plain C++; the
// AVX-512 kernel is tested bit for bit against it (tests/kernels/kernels_bf16_test.cpp).
//
// Error vs the exact f32 product: each x[t, k] moves by at most 2^-9 |x[t, k]| (bf16 rounding),
// so |y - exact| <= 2^-9 sum_k |W[r,k] x[t,k]| (+ f32 accumulation).
#pragma once

#include <cstdint>

namespace meshlm::kernels::bf16 {

// Step 1 for one value.
uint16_t bf16_round(float v);

// Elements per padded bf16 row of x: cols rounded up to a multiple of 32.
inline int64_t bf16_x_stride(int64_t cols) { return (cols + 31) / 32 * 32; }

// Step 1 for n_tok rows: xb[t * bf16_x_stride(cols) + k], padding zeroed. Scalar model.
void round_tokens_model(const float* x, int64_t n_tok, int64_t cols, uint16_t* xb);

// The whole algorithm, scalar: y[t * rows + r] for rows [r0, r1), tokens [0, n_tok), from the
// rounded x of round_tokens_model (rows bf16_x_stride(cols) apart).
void matmul_rows_model(const uint16_t* w, int64_t rows, int64_t cols, const uint16_t* xb,
                       int64_t n_tok, float* y, const float* bias, int64_t r0, int64_t r1);

// Whether this CPU and OS run AVX512-BF16 (cpuid leaf 7 subleaf 1 EAX bit 5, AVX512F/BW, and the
// OS saving the AVX-512 state). False on other architectures.
bool cpu_supported();

// The kernel (AVX512-BF16); only where cpu_supported(). Same arguments and bits as the model;
// xb must be 64-byte aligned.
void round_tokens(const float* x, int64_t n_tok, int64_t cols, uint16_t* xb);
void matmul_rows(const uint16_t* w, int64_t rows, int64_t cols, const uint16_t* xb, int64_t n_tok,
                 float* y, const float* bias, int64_t r0, int64_t r1);

}  // namespace meshlm::kernels::bf16
