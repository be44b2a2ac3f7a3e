// LayerRange: a contiguous range of decoder layers [begin, end), the unit a stage holds. One
// type from the command line ("0-13,14-27") through the plan and the wire messages to the stage.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace meshlm::model {

struct LayerRange {
  int64_t begin = 0;
  int64_t end = 0;

  int64_t size() const { return end - begin; }
  bool contains(int64_t layer) const { return layer >= begin && layer < end; }
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

// The ranges of consecutive stages that cover [0, n_layers) from their boundaries
// {0, b1, ..., n_layers}. Throws Error("layers", ...) for anything else.
std::vector<LayerRange> ranges_from_splits(const std::vector<int64_t>& splits, int64_t n_layers);
// Boundaries of consecutive ranges: {r[0].begin, r[0].end, r[1].end, ...}.
std::vector<int64_t> splits_of(const std::vector<LayerRange>& ranges);

}  // namespace meshlm::model
