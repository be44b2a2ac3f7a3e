// LayerRange: a contiguous range of decoder layers [begin, end), the unit a stage holds. One
// type from the command line ("0-13,14-27") through the plan and the wire messages to the stage.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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

// A model's layers cut into consecutive stages: ranges[0] begins at 0, each range begins where
// the previous one ends, the last ends at n_layers. The form every layout takes, from the
// command line (`--layers 0-13,14-27`) through the plan to the stages.
using LayerPartition = std::vector<LayerRange>;

// Throws Error(what, ...) unless `p` partitions [0, n_layers) as above (at least one range).
void check_partition(const LayerPartition& p, int64_t n_layers, const char* what = "layers");
// n_stages ranges as equal as they can be: stage k begins at n_layers * k / n_stages (rounded
// down), so the later ones are one layer longer where it does not divide. Throws
// Error("layers") unless 1 <= n_stages <= n_layers.
LayerPartition even_partition(int64_t n_layers, int n_stages);
// "0-13,14-27" (inclusive bounds, what --layers takes); checked against n_layers. Throws
// Error(what, ...) naming the text when it is malformed or not a partition.
LayerPartition parse_partition(const std::string& text, int64_t n_layers,
                               const char* what = "layers");
// The inverse of parse_partition: "0-13,14-27".
std::string format_partition(const LayerPartition& p);

}  // namespace meshlm::model
