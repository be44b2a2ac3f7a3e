// Activation types: what a row of f32 activations may be stored as outside the compute — the KV
// cache (--cache-type, model/kv_cache.h) and the links between machines (--wire: pipeline hops and
// tensor-parallel all-reduces). f32 is exact; bf16 and f16 round each value; q8_0 stores blocks of
// 32 values as an f16 scale and 32 int8 (ggml's Q8_0). One table, so the cache, the kernels and
// the transport accept the same names.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "formats/weight_format.h"

namespace meshlm::formats {

// F32, BF16, F16, Q8_0.
std::span<const WeightType> activation_types();
bool is_activation_type(WeightType t);
// The type of a name: "f32", "bf16", "f16", "q8_0" (upper case too), or nullopt.
std::optional<WeightType> activation_type_from_name(std::string_view name);
// The lower-case name of an activation type ("f32", "bf16", "f16", "q8_0"); another type's format
// name.
std::string_view activation_type_name(WeightType t);
// "f32, bf16, f16, q8_0": for error messages and help texts.
std::string_view activation_type_names();
// Throws Error(tag, ...) naming `what` (e.g. "--wire") unless t is an activation type whose
// blocks tile rows of dim values.
void check_activation_rows(WeightType t, int64_t dim, const char* tag, std::string_view what);
// x[0, n) = what x reads back as after being stored in type t: encoded with quantize_row and
// decoded with dequantize_row (nothing for F32). n must be a whole number of t's blocks: throws
// Error("format") otherwise.
void round_activations(WeightType t, float* x, int64_t n);

}  // namespace meshlm::formats
