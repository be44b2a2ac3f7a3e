// LayerRange: a contiguous range of decoder layers [begin, end), the unit a stage holds. One
// type from the command line ("0-13,14-27") through the plan and the wire messages to the stage.
#pragma once

#include <cstdint>
#include <string>

namespace meshlm::model {

struct LayerRange {
  int64_t begin = 0;
  int64_t end = 0;

  int64_t size() const { return end - begin; }
  bool is_first() const { return begin == 0; }
  bool is_last(int64_t n_layers) const { return end == n_layers; }
  bool operator==(const LayerRange&) const = default;
  // "[begin, end)"
  std::string str() const;
  // "begin-(end-1)", the inclusive form --layers and logs use ("0-13").
  std::string inclusive_str() const;
  // Throws Error(what, ...) unless 0 <= begin < end <= n_layers.
  void check(int64_t n_layers, const char* what = "layers") const;
};

}  // namespace meshlm::model
