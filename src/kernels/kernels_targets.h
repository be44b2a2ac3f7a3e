// Test and benchmark hooks over the SIMD targets compiled into the kernels (Highway dispatch), so
// that parity tests can run every kernel once per target the CPU supports, not only the best one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace meshlm::kernels {

// Highway target bits that are both compiled in and supported by this CPU, best first.
std::vector<int64_t> simd_compiled_targets();

// Every target compiled into this build, whether or not this CPU runs it, best first: tests list
// them all and skip, saying so, the ones this CPU lacks.
std::vector<int64_t> simd_built_targets();
bool simd_target_supported(int64_t target);

// Restricts dispatch to `target` (one bit from simd_compiled_targets()); 0 restores the normal
// choice. Process-wide and not thread-safe: for tests and benchmarks only.
void simd_force_target(int64_t target);

// Turns the BF16 dot-product path (kernels_bf16.h, bf16_dot_active()) on (where the CPU and the
// target allow it) or off, overriding MESHLM_BF16_DOT. Process-wide: for tests and benchmarks.
void simd_set_bf16_dot(bool enabled);

// Highway's name for a target bit ("AVX2", "SSE4", "EMU128", "NEON", ...).
std::string simd_target_label(int64_t target);

}  // namespace meshlm::kernels
