// Constructors of the host backends (backend.cpp's create() picks one by name).
#pragma once

#include <memory>

#include "backend/backend.h"

namespace meshlm::backend {

std::unique_ptr<Backend> make_cpu_backend(int threads);
std::unique_ptr<Backend> make_ref_backend();

// RopeStyle::Interleaved on the host, scalar (both host backends use it: it costs a few
// multiplies per value, next to a matmul's thousands).
void rope_interleaved_host(float* x, int64_t n_tok, int64_t n_heads, int64_t head_dim,
                           const int64_t* pos, const float* inv_freq);
// Backend::add_scaled on the host (both host backends: the same bits): the product rounded,
// then the sum (built without contraction into a fused multiply-add).
void add_scaled_host(float* dst, const float* src, float scale, int64_t n);
// Backend::store_kv on the host (both host backends).
void store_kv_host(void* dst, WeightType type, const float* src, int64_t n);

}  // namespace meshlm::backend
