// The quantized-activation matmul of kernels_quant.h, scalar: activation quantization (shared by
// every target) and the exact algorithm, written as plainly as the statement in the header.
// Compiled with -ffp-contract=off (CMakeLists.txt): every float operation rounds once.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/half.h"
#include "kernels/kernels_quant.h"

namespace meshlm::kernels::quant {

int64_t activation_block(WeightType t) {
  switch (t) {
    case WeightType::Q4_0:
    case WeightType::Q4_1:
    case WeightType::Q5_0:
    case WeightType::Q5_1:
    case WeightType::Q8_0:
      return 32;
    case WeightType::Q4_K:
    case WeightType::Q5_K:
    case WeightType::Q6_K:
      return 256;
    default:
      // MLX affine 4- and 8-bit (every group size and scale dtype): 32, like Q4_1.
      if (auto m = formats::mlx_affine(t); m && (m->bits == 4 || m->bits == 8)) return 32;
      return 0;
  }
}

// v rounded to f16 precision as ggml stores it (round to nearest even, subnormals included), or v
// itself where that overflows.
static float round_f16(float v) {
  const float h = f16_to_f32(f32_to_f16(v));
  return std::isinf(h) ? v : h;
}

void quantize_activations(const float* x, int64_t cols, int64_t block, int8_t* q, float* d,
                          int32_t* sums, float* d_f32, float* sx) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const bool q8_0 = block == 32;  // else q8_K
  for (int64_t b = 0; b < cols / block; ++b) {
    const float* xb = x + b * block;
    int8_t* qb = q + b * block;
    float amax = 0;
    bool finite = true;
    for (int64_t j = 0; j < block; ++j) {
      finite = finite && std::isfinite(xb[j]);
      amax = std::max(amax, std::fabs(xb[j]));
    }
    float scale = 0;  // codes = nearbyint(x * scale)
    if (finite) {
      if (q8_0) {
        scale = 127.0f / amax;
      } else {
        int64_t jm = 0;  // the first element of largest |x| (amax is one of them)
        while (std::fabs(xb[jm]) != amax) ++jm;
        scale = -127.0f / xb[jm];
      }
    }
    if (!finite || std::isinf(scale)) {  // NaN / inf activation, or a zero / tiny block
      const float v = finite ? 0.0f : nan;
      d[b] = v;
      if (q8_0) d_f32[b] = v;
      std::memset(qb, 0, size_t(block));
      continue;
    }
    for (int64_t j = 0; j < block; ++j)
      qb[j] = int8_t(std::clamp(std::nearbyint(xb[j] * scale), -127.0f, 127.0f));
    if (q8_0) {
      d_f32[b] = amax / 127.0f;
      d[b] = round_f16(d_f32[b]);
    } else {
      d[b] = 1.0f / scale;
    }
  }
  for (int64_t c = 0; c < cols / 32; ++c) {
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) s += q[c * 32 + j];
    sums[c] = s;
    if (q8_0) sx[c] = std::isnan(d_f32[c]) ? nan : round_f16(d_f32[c] * float(s));
  }
}

namespace {

float f16_at(const uint8_t* p) { return f16_to_f32(uint16_t(p[0] | p[1] << 8)); }

struct Acc {
  float a[16] = {};
  float off = 0;
  bool has_off = false;
  // acc[8 * (c % 2) + i] += float(p[i]) * s for the chunk parity h = c % 2.
  void add_chunk(int h, const int32_t* p, float s) {
    for (int i = 0; i < 8; ++i) {
      const float prod = float(p[i]) * s;
      a[8 * h + i] = a[8 * h + i] + prod;
    }
  }
  // Q4_1 / Q5_1 / Q6_K (ggml's vec_dot order): acc[i] = fma(float(p[i]), s, acc[i]), lanes 0-7.
  void fma_chunk(const int32_t* p, float s) {
    for (int i = 0; i < 8; ++i) a[i] = std::fma(float(p[i]), s, a[i]);
  }
  float finish(bool eight = false) const {
    float s8[8], s4[4], s2[2];
    for (int i = 0; i < 8; ++i) s8[i] = eight ? a[i] : a[i] + a[i + 8];
    for (int i = 0; i < 4; ++i) s4[i] = s8[i] + s8[i + 4];
    for (int i = 0; i < 2; ++i) s2[i] = s4[i] + s4[i + 2];
    const float s = s2[0] + s2[1];
    return has_off ? s + off : s;
  }
};

// p[i] = sum of w[j] * q[j], j in [4i, 4i + 4), i < 8.
void dot4(const int* w, const int8_t* q, int32_t* p) {
  for (int i = 0; i < 8; ++i) {
    p[i] = 0;
    for (int j = 4 * i; j < 4 * i + 4; ++j) p[i] += w[j] * q[j];
  }
}

// The 32 levels of a legacy block (offset applied where the type has no minimum), its scale d
// and, for Q4_1 / Q5_1, its minimum m.
void legacy_levels(WeightType t, const uint8_t* b, int* w, float* d, float* m) {
  auto nib = [](const uint8_t* qs, int j) { return j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4; };
  auto qh_bit = [](const uint8_t* p, int j) {
    const uint32_t qh = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 |
                        uint32_t(p[3]) << 24;
    return int(qh >> j & 1);
  };
  *d = f16_at(b);
  *m = 0;
  for (int j = 0; j < 32; ++j) switch (t) {
      case WeightType::Q4_0: w[j] = nib(b + 2, j) - 8; break;
      case WeightType::Q4_1: w[j] = nib(b + 4, j); break;
      case WeightType::Q5_0: w[j] = (nib(b + 6, j) | qh_bit(b + 2, j) << 4) - 16; break;
      case WeightType::Q5_1: w[j] = nib(b + 8, j) | qh_bit(b + 4, j) << 4; break;
      default: w[j] = int8_t(b[2 + j]); break;  // Q8_0
    }
  if (t == WeightType::Q4_1 || t == WeightType::Q5_1) *m = f16_at(b + 2);
}

// Q4_K / Q5_K: the 6-bit scale and minimum of sub-block j (ggml's packing, formats/quants_k.cpp).
void scale_min_k4(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4;
    *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
  }
}

// One super-block of a K-quant: levels w[256] (Q6_K: offset applied), 16 sub-scales per 16
// elements sc16[16] (Q4_K / Q5_K: each 32-element scale twice), mins per 32 (Q4_K / Q5_K), d, dmin.
void k_levels(WeightType t, const uint8_t* b, int* w, int* sc16, int* mins, float* d,
              float* dmin) {
  if (t == WeightType::Q6_K) {
    for (int e = 0; e < 256; ++e) {
      const int h = e / 128, k = e % 128;
      const uint8_t* ql = b + 64 * h;
      const uint8_t* qh = b + 128 + 32 * h;
      const int lo = k < 64 ? ql[k] & 0xF : ql[k - 64] >> 4;
      const int hi = qh[k % 32] >> (2 * (k / 32)) & 3;
      w[e] = (lo | hi << 4) - 32;
    }
    for (int s = 0; s < 16; ++s) sc16[s] = int8_t(b[192 + s]);
    for (int s = 0; s < 8; ++s) mins[s] = 0;
    *d = f16_at(b + 208);
    *dmin = 0;
    return;
  }
  const bool five = t == WeightType::Q5_K;
  *d = f16_at(b);
  *dmin = f16_at(b + 2);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + (five ? 48 : 16);
  for (int s = 0; s < 8; ++s) {
    int sc, m;
    scale_min_k4(b + 4, s, &sc, &m);
    sc16[2 * s] = sc16[2 * s + 1] = sc;
    mins[s] = m;
    for (int l = 0; l < 32; ++l) {
      const uint8_t byte = qs[32 * (s / 2) + l];
      int q = s % 2 == 0 ? byte & 0xF : byte >> 4;
      if (five) q |= (qh[l] >> s & 1) << 4;
      w[32 * s + l] = q;
    }
  }
}

// MLX affine 4 / 8 bits (formats/mlx_affine.h): Q4_1's arithmetic per 32-element chunk c, the
// chunk's scale and minimum those of its group: acc[L] += float(p_i) * (s * dx_c) and off +=
// float(codesum_c) * (m * dx_c), in chunk order. 4 bits: w = the code (0..15), m = bias. 8 bits:
// w = code - 128 (as stored, int8), m = bias + s * 128 (f32, once per group).
float mlx_row_dot(const formats::MlxAffine& mx, const uint8_t* row, int64_t cols,
                  const int8_t* qx, const float* dx, const int32_t* sums) {  // dx: d_f32
  const size_t sb = mx.scale_type == WeightType::F32 ? 4 : 2;
  auto scale_at = [&](const uint8_t* p) {
    if (sb == 4) {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    const uint16_t h = uint16_t(p[0] | p[1] << 8);
    return mx.scale_type == WeightType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
  };
  const int chunks = mx.group / 32;
  const size_t code_bytes = size_t(mx.bits) * 4;  // per 32-element chunk
  const size_t block_bytes = 2 * sb + size_t(chunks) * code_bytes;
  Acc acc;
  acc.has_off = true;
  for (int64_t g = 0; g < cols / mx.group; ++g) {
    const uint8_t* blk = row + size_t(g) * block_bytes;
    const float s = scale_at(blk), bias = scale_at(blk + sb);
    const float m = mx.bits == 8 ? bias + s * 128.0f : bias;
    for (int k = 0; k < chunks; ++k) {
      const int64_t c = g * chunks + k;
      const uint8_t* q = blk + 2 * sb + size_t(k) * code_bytes;
      int w[32];
      for (int j = 0; j < 32; ++j)
        w[j] = mx.bits == 8 ? int(int8_t(q[j])) : j < 16 ? q[j] & 0xF : q[j - 16] >> 4;
      int32_t p[8];
      dot4(w, qx + 32 * c, p);
      acc.add_chunk(int(c % 2), p, s * dx[c]);
      const float prod = float(sums[c]) * (m * dx[c]);
      acc.off = acc.off + prod;
    }
  }
  return acc.finish();
}

float row_dot(WeightType t, const uint8_t* row, int64_t cols, const QuantizedX& xq, int64_t tok) {
  const int8_t* qx = xq.q_at(tok);
  const int32_t* sums = xq.sums_at(tok);
  if (auto mx = formats::mlx_affine(t))
    return mlx_row_dot(*mx, row, cols, qx, xq.d_f32_at(tok), sums);
  const float* dx = xq.d_at(tok);
  const formats::FormatInfo& f = formats::info(t);
  const int64_t nb = cols / f.block_elems;
  Acc acc;
  if (f.block_elems == 32) {
    acc.has_off = t == WeightType::Q4_1 || t == WeightType::Q5_1;
    for (int64_t b = 0; b < nb; ++b) {
      int w[32];
      float d, m;
      legacy_levels(t, row + b * int64_t(f.block_bytes), w, &d, &m);
      int32_t p[8];
      dot4(w, qx + 32 * b, p);
      if (acc.has_off) {  // Q4_1 / Q5_1
        acc.fma_chunk(p, d * dx[b]);
        acc.off = std::fma(m, xq.sx_at(tok)[b], acc.off);
      } else {
        acc.add_chunk(int(b % 2), p, d * dx[b]);
      }
    }
    return acc.finish(acc.has_off);
  }
  acc.has_off = t != WeightType::Q6_K;
  for (int64_t b = 0; b < nb; ++b) {
    int w[256], sc16[16], mins[8];
    float d, dmin;
    k_levels(t, row + b * int64_t(f.block_bytes), w, sc16, mins, &d, &dmin);
    int32_t P[16] = {};
    int32_t M = 0;
    for (int c = 0; c < 8; ++c) {
      int32_t p[8];
      dot4(w + 32 * c, qx + 256 * b + 32 * c, p);
      for (int i = 0; i < 8; ++i) P[8 * (c % 2) + i] += sc16[2 * c + i / 4] * p[i];
      M += mins[c] * sums[8 * b + c];
    }
    const float s = d * dx[b];
    if (t == WeightType::Q6_K) {  // ggml's order: the two halves' integers summed, 8 lanes, fma
      int32_t P8[8];
      for (int i = 0; i < 8; ++i) P8[i] = P[i] + P[i + 8];
      acc.fma_chunk(P8, s);
      continue;
    }
    acc.add_chunk(0, P, s);
    acc.add_chunk(1, P + 8, s);
    if (acc.has_off) {
      const float prod = float(M) * -(dmin * dx[b]);
      acc.off = acc.off + prod;
    }
  }
  return acc.finish(t == WeightType::Q6_K);
}

}  // namespace

void matmul_rows_model(const formats::WeightView& w, const QuantizedX& xq, int64_t n_tok,
                       float* y, const float* bias, int64_t r0, int64_t r1) {
  const size_t rb = formats::row_bytes(w.dtype, w.cols);
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t r = r0; r < r1; ++r) {
      const float s =
          row_dot(w.dtype, static_cast<const uint8_t*>(w.data) + size_t(r) * rb, w.cols, xq, t);
      y[t * w.rows + r] = bias ? s + bias[r] : s;
    }
}

}  // namespace meshlm::kernels::quant
