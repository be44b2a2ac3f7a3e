#include "backend/read_speed.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"

namespace meshlm::backend {

double measure_read_speed(std::string_view backend_name, int threads, WeightType type, uint64_t bytes,
                          int rounds) {
  auto be = create(backend_name, std::max(1, threads));
  const int64_t cols = 4096;  // whole blocks of every format (256 values at most)
  const size_t row = formats::row_bytes(type, cols);
  const int64_t rows = std::max<int64_t>(64, int64_t(bytes / row));
  // Bytes of small finite values in every format (f16/bf16 scales 0x1111), written so that the
  // pages are committed, not the shared zero page.
  std::vector<uint8_t> w(size_t(rows) * row, 0x11);
  std::vector<float> x(static_cast<size_t>(cols)), y(static_cast<size_t>(rows));
  for (int64_t i = 0; i < cols; ++i) x[size_t(i)] = float((i * 37) % 101) / 101.0f - 0.5f;
  const WeightView view{w.data(), type, rows, cols};
  be->matmul(view, x.data(), 1, y.data());
  be->synchronize();
  std::vector<double> seconds;
  for (int r = 0; r < std::max(1, rounds); ++r) {
    const auto start = std::chrono::steady_clock::now();
    be->matmul(view, x.data(), 1, y.data());
    be->synchronize();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = std::max(seconds[seconds.size() / 2], 1e-9);
  return double(w.size()) / median;
}

}  // namespace meshlm::backend
