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

}  // namespace meshlm::model
