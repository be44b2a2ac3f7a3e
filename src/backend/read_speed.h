// How fast this node reads weights the way a decode step does: a matrix-vector product over a
// matrix larger than the caches, through the compute backend a stage uses (`--backend`, its
// thread count), in a given weight format (quantized formats decode as they read, so their
// bytes/s differ from BF16's). The layout predictor (layout_model.h) divides a stage's weight
// bytes by it; workers report theirs in NodeInfo::read_bytes_per_s.
#pragma once

#include <cstdint>
#include <string_view>

#include "formats/weight_format.h"

namespace meshlm::backend {

// Median bytes/s of `rounds` products over about `bytes` of weights (after one untimed round
// that commits the pages). Throws Error("backend", ...) for an unknown backend.
double measure_read_speed(std::string_view backend, int threads, WeightType type = WeightType::BF16,
                          uint64_t bytes = 128ull << 20, int rounds = 3);

}  // namespace meshlm::backend
