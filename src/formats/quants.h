// Block quantization: scalar reference decoders for every GGUF block type meshlm reads (reached
// through the format table: formats::dequantize_row, FormatInfo::dequantize) and encoders for the
// types `meshlm quantize` writes. Optimised kernels are tested against these.
//
// The layouts are ggml's (little-endian; f16 = IEEE binary16; "nibble" = 4 bits, low first):
//   Q4_0   32 elems, 18 B: d f16 | qs[16]: x[j] = d*(lo(qs[j])-8), x[j+16] = d*(hi(qs[j])-8)
//   Q4_1   32 elems, 20 B: d f16 | m f16 | qs[16]: x = d*q + m
//   Q5_0   32 elems, 22 B: d f16 | qh u32 | qs[16]: the 5th bit of element j is bit j of qh;
//                          x = d*(q-16)
//   Q5_1   32 elems, 24 B: d f16 | m f16 | qh u32 | qs[16]: x = d*q + m
//   Q8_0   32 elems, 34 B: d f16 | qs[32] int8: x = d*q
//   Q2_K  256 elems, 84 B: scales[16] (lo: scale, hi: min, 4 bits each, one per 16 elements) |
//                          qs[64] 2-bit | d f16 | dmin f16: x = (d*sc)*q - (dmin*m)
//   Q3_K  256 elems, 110 B: hmask[32] | qs[64] 2-bit | scales[12] (16 6-bit scales, offset 32) |
//                          d f16: x = (d*(sc-32))*(q - 4 unless the hmask bit is set)
//   Q4_K  256 elems, 144 B: d f16 | dmin f16 | scales[12] (8 6-bit scales + 8 6-bit mins, one
//                          pair per 32 elements) | qs[128]: x = (d*sc)*q - (dmin*m)
//   Q5_K  256 elems, 176 B: as Q4_K with qh[32] (the 5th bits) before qs[128]
//   Q6_K  256 elems, 210 B: ql[128] | qh[64] | scales[16] int8 (one per 16 elements) | d f16:
//                          x = (d*sc)*(q-32)
//   IQ4_NL 32 elems, 18 B: d f16 | qs[16]: x = d*kIq4nlValues[nibble] (a fixed non-linear grid)
//   IQ4_XS 256 elems, 136 B: d f16 | scales_h u16 | scales_l[4] | qs[128]: eight 6-bit scales
//                          (offset 32), one per 32 elements: x = (d*(sc-32))*kIq4nlValues[nibble]
//   MXFP4  32 elems, 17 B: e (E8M0 exponent) | qs[16]: x = kE2m1Doubled[nibble] * 2^(e-128)
// Each decoder evaluates in ggml's (dequantize_row_*) order, in f32, so results are bit-identical
// to ggml's and gguf-py's: the sources are compiled with -ffp-contract=off so that no compiler
// fuses d*q + m into one rounding.
#pragma once

#include <cstdint>

#include "formats/weight_format.h"

namespace meshlm::formats {

// IQ4_NL's (and IQ4_XS's) grid of 16 levels.
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};
// MXFP4's E2M1 values times two (the decoder halves the E8M0 scale to match).
inline constexpr int8_t kE2m1Doubled[16] = {0, 1,  2,  3,  4,  6,  8,  12,
                                            0, -1, -2, -3, -4, -6, -8, -12};

// True for the types quantize_row can write: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K,
// Q5_K, Q6_K, the plain F32, BF16, F16, and every MLX affine type (formats/mlx_affine.h:
// quantize_mlx, mlx_quantize.py's arithmetic). The block encoders write the same bytes as ggml's
// reference quantizers (quantize_row_*_ref, which llama-quantize runs when it has no importance
// matrix): the legacy types round as ggml does; the K-quants follow llama.cpp's published method
// (per sub-block, a search for the scale and minimum that minimise a weighted squared error, then
// 4-, 6- or 8-bit sub-block scales against an f16 super-block scale).
bool can_quantize(WeightType t);

// dst[0, row_bytes(t, n)) = the row src[0, n) in format t. Throws Error("format") when t has no
// quantizer, when n is not a whole number of blocks, when an input is infinite or NaN, or when a
// block's scale or minimum does not fit an f16 (inputs of magnitude beyond about 65504 times the
// type's largest level: ~1e6 for Q4_1, ~8e6 for Q8_0, ~3e8 for Q6_K; beyond 2^32 for every type).
// F16 and BF16 throw for finite inputs that round to infinity. An all-zero block decodes to
// zeros.
void quantize_row(WeightType t, const float* src, int64_t n, void* dst);

// The decoders the format table points at: dst[0, n_blocks * block_elems) = the n_blocks blocks
// at src. src needs no alignment.
void dequantize_q4_0(const void* src, int64_t n_blocks, float* dst);
void dequantize_q4_1(const void* src, int64_t n_blocks, float* dst);
void dequantize_q5_0(const void* src, int64_t n_blocks, float* dst);
void dequantize_q5_1(const void* src, int64_t n_blocks, float* dst);
void dequantize_q8_0(const void* src, int64_t n_blocks, float* dst);
void dequantize_q2_k(const void* src, int64_t n_blocks, float* dst);
void dequantize_q3_k(const void* src, int64_t n_blocks, float* dst);
void dequantize_q4_k(const void* src, int64_t n_blocks, float* dst);
void dequantize_q5_k(const void* src, int64_t n_blocks, float* dst);
void dequantize_q6_k(const void* src, int64_t n_blocks, float* dst);
void dequantize_iq4_nl(const void* src, int64_t n_blocks, float* dst);
void dequantize_iq4_xs(const void* src, int64_t n_blocks, float* dst);
void dequantize_mxfp4(const void* src, int64_t n_blocks, float* dst);

// The encoders quantize_row dispatches to: the n_blocks blocks at dst from src[0, n_blocks *
// block_elems). They do not check their input (quantize_row does).
void quantize_q4_0(const float* src, int64_t n_blocks, void* dst);
void quantize_q4_1(const float* src, int64_t n_blocks, void* dst);
void quantize_q5_0(const float* src, int64_t n_blocks, void* dst);
void quantize_q5_1(const float* src, int64_t n_blocks, void* dst);
void quantize_q8_0(const float* src, int64_t n_blocks, void* dst);
void quantize_q2_k(const float* src, int64_t n_blocks, void* dst);
void quantize_q3_k(const float* src, int64_t n_blocks, void* dst);
void quantize_q4_k(const float* src, int64_t n_blocks, void* dst);
void quantize_q5_k(const float* src, int64_t n_blocks, void* dst);
void quantize_q6_k(const float* src, int64_t n_blocks, void* dst);

}  // namespace meshlm::formats
