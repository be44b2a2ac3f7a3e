// The BF16 dot-product matmul of kernels_bf16.h, scalar: the statement of the algorithm, operation
// for operation. Compiled with -ffp-contract=off (CMakeLists.txt): every float operation rounds
// once, and the fma's are std::fma (one rounding, whether the CPU has FMA or not).
#include <cmath>
#include <cstring>
#include <initializer_list>

#include "kernels/kernels_bf16.h"

namespace meshlm::kernels::bf16 {

namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// A subnormal becomes a zero of its sign (vdpbf16ps: "daz in, ftz out").
float flush(float f) {
  const uint32_t u = bits(f);
  return (u & 0x7f800000u) == 0 ? from_bits(u & 0x80000000u) : f;
}

float widen(uint16_t h) { return from_bits(uint32_t(h) << 16); }

}  // namespace

uint16_t bf16_round(float v) {
  const uint32_t u = bits(v);
  if ((u & 0x7f800000u) == 0) return uint16_t((u >> 16) & 0x8000u);       // zero, subnormal
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // NaN, quieted
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

void round_tokens_model(const float* x, int64_t n_tok, int64_t cols, uint16_t* xb) {
  const int64_t stride = bf16_x_stride(cols);
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t k = 0; k < stride; ++k)
      xb[t * stride + k] = k < cols ? bf16_round(x[t * cols + k]) : 0;
}

void matmul_rows_model(const uint16_t* w, int64_t rows, int64_t cols, const uint16_t* xb,
                       int64_t n_tok, float* y, const float* bias, int64_t r0, int64_t r1) {
  const int64_t stride = bf16_x_stride(cols);
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t r = r0; r < r1; ++r) {
      const uint16_t* wr = w + r * cols;
      const uint16_t* xt = xb + t * stride;
      float l[16] = {};
      for (int64_t c = 0; c < stride; c += 32)
        for (int i = 0; i < 16; ++i)
          for (int j : {2 * i + 1, 2 * i}) {  // odd element first, then even
            const int64_t k = c + j;
            const float a = k < cols ? flush(widen(wr[k])) : 0.0f;
            const float b = flush(widen(xt[k]));
            l[i] = flush(std::fma(a, b, flush(l[i])));
          }
      float a8[8], a4[4], a2[2];
      for (int i = 0; i < 8; ++i) a8[i] = l[i] + l[i + 8];
      for (int i = 0; i < 4; ++i) a4[i] = a8[i] + a8[i + 4];
      for (int i = 0; i < 2; ++i) a2[i] = a4[i] + a4[i + 2];
      y[t * rows + r] = (a2[0] + a2[1]) + (bias ? bias[r] : 0.0f);
    }
}

}  // namespace meshlm::kernels::bf16
