// Shared helpers of the kernel parity tests: random data, weight matrices of every dtype at a
// chosen misalignment, one thread pool per thread count, and a fixture that runs each test once
// per SIMD target compiled in and supported by this CPU.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "formats/weight_format.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/kernels_targets.h"

namespace meshlm::kernels::test {

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& f : v) f = dist(rng);
  return v;
}

// A float buffer whose data() is misaligned by `offset` floats from a 64-byte boundary.
class FloatBuf {
 public:
  FloatBuf(const std::vector<float>& values, size_t offset)
      : storage_(values.size() + offset + 16), offset_(offset + pad()) {
    std::memcpy(data(), values.data(), values.size() * sizeof(float));
  }
  float* data() { return storage_.data() + offset_; }

 private:
  size_t pad() const {
    auto addr = reinterpret_cast<uintptr_t>(storage_.data());
    return ((64 - addr % 64) % 64) / sizeof(float);
  }
  std::vector<float> storage_;
  size_t offset_;
};

// A weight matrix of the given dtype holding (the dtype's rounding of) `values`, its first element
// `offset_elems` elements past a 64-byte boundary. view() is what the kernels take; values() the
// exact f32 values it holds.
class Weights {
 public:
  Weights(WeightType dtype, int64_t rows, int64_t cols, const std::vector<float>& values,
          size_t offset_elems)
      : dtype_(dtype), rows_(rows), cols_(cols), exact_(values.size()) {
    const size_t es = formats::row_bytes(dtype, 1);  // plain element types only
    bytes_.resize(values.size() * es + offset_elems * es + 128);
    auto addr = reinterpret_cast<uintptr_t>(bytes_.data());
    start_ = (64 - addr % 64) % 64 + offset_elems * es;
    for (size_t i = 0; i < values.size(); ++i) {
      uint8_t* p = bytes_.data() + start_ + i * es;
      if (dtype == WeightType::F32) {
        std::memcpy(p, &values[i], 4);
        exact_[i] = values[i];
      } else {
        uint16_t h = dtype == WeightType::BF16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
        std::memcpy(p, &h, 2);
        exact_[i] = dtype == WeightType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
      }
    }
  }
  MatView view() const { return MatView{bytes_.data() + start_, dtype_, rows_, cols_}; }
  const std::vector<float>& values() const { return exact_; }

 private:
  WeightType dtype_;
  int64_t rows_, cols_;
  std::vector<uint8_t> bytes_;
  size_t start_ = 0;
  std::vector<float> exact_;
};

// Pools of 1..4 threads, created once for the whole test binary.
inline ThreadPool& pool_of(int n_threads) {
  static std::vector<std::unique_ptr<ThreadPool>> pools = [] {
    std::vector<std::unique_ptr<ThreadPool>> p;
    for (int n = 1; n <= 4; ++n) p.push_back(std::make_unique<ThreadPool>(n));
    return p;
  }();
  return *pools.at(size_t(n_threads - 1));
}

inline const WeightType kAllDTypes[] = {WeightType::F32, WeightType::BF16, WeightType::F16};

// Runs the test once per SIMD target (AVX2, SSE4, EMU128/scalar... as this CPU supports).
class PerTarget : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override { simd_force_target(GetParam()); }
  void TearDown() override { simd_force_target(0); }
};

inline std::string target_param_name(const ::testing::TestParamInfo<int64_t>& info) {
  std::string name = simd_target_label(info.param);
  for (auto& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

#define MESHLM_INSTANTIATE_PER_TARGET(suite)                                                \
  INSTANTIATE_TEST_SUITE_P(Targets, suite,                                                  \
                           ::testing::ValuesIn(::meshlm::kernels::simd_compiled_targets()), \
                           ::meshlm::kernels::test::target_param_name)

}  // namespace meshlm::kernels::test
