#include "model/layer_range.h"

#include "core/error.h"

namespace meshlm::model {

std::string LayerRange::str() const {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

std::string LayerRange::inclusive_str() const {
  return std::to_string(begin) + "-" + std::to_string(end - 1);
}

void LayerRange::check(int64_t n_layers, const char* what) const {
  if (begin < 0 || end > n_layers || begin >= end)
    throw Error(what, "invalid layer range " + str() + " for a model of " +
                          std::to_string(n_layers) + " layers");
}

std::vector<LayerRange> ranges_from_splits(const std::vector<int64_t>& splits, int64_t n_layers) {
  if (splits.size() < 2 || splits.front() != 0 || splits.back() != n_layers)
    throw Error("layers", "stage boundaries must run from 0 to " + std::to_string(n_layers));
  std::vector<LayerRange> out;
  for (size_t i = 0; i + 1 < splits.size(); ++i) {
    LayerRange r{splits[i], splits[i + 1]};
    r.check(n_layers);
    out.push_back(r);
  }
  return out;
}

std::vector<int64_t> splits_of(const std::vector<LayerRange>& ranges) {
  std::vector<int64_t> s;
  if (ranges.empty()) return s;
  s.push_back(ranges.front().begin);
  for (const auto& r : ranges) s.push_back(r.end);
  return s;
}

}  // namespace meshlm::model
