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

void check_partition(const LayerPartition& p, int64_t n_layers, const char* what) {
  if (p.empty()) throw Error(what, "no layer ranges");
  int64_t next = 0;
  for (const auto& r : p) {
    if (r.begin != next)
      throw Error(what, "layer ranges " + format_partition(p) + " must follow on from each other " +
                            "starting at 0 (one range starts at " + std::to_string(r.begin) +
                            ", expected " + std::to_string(next) + ")");
    r.check(n_layers, what);
    next = r.end;
  }
  if (next != n_layers)
    throw Error(what, "layer ranges " + format_partition(p) + " cover layers 0-" +
                          std::to_string(next - 1) + " but the model has " +
                          std::to_string(n_layers));
}

LayerPartition even_partition(int64_t n_layers, int n_stages) {
  if (n_stages < 1 || n_stages > n_layers)
    throw Error("layers", "cannot split " + std::to_string(n_layers) + " layers into " +
                              std::to_string(n_stages) + " stages");
  LayerPartition p;
  for (int k = 0; k < n_stages; ++k)
    p.push_back({n_layers * k / n_stages, n_layers * (k + 1) / n_stages});
  return p;
}

LayerPartition parse_partition(const std::string& text, int64_t n_layers, const char* what) {
  LayerPartition p;
  auto bad = [&] {
    return Error(what,
                 "wants layer ranges like 0-13,14-27 (inclusive, from 0 to the last "
                 "layer); got '" +
                     text + "'");
  };
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item =
        text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t dash = item.find('-');
    if (dash == std::string::npos || dash == 0 || dash + 1 == item.size()) throw bad();
    auto number = [&](const std::string& s) {
      if (s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) throw bad();
      return int64_t(std::stoll(s));
    };
    int64_t first = number(item.substr(0, dash)), last = number(item.substr(dash + 1));
    if (last < first) throw bad();
    p.push_back({first, last + 1});
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  check_partition(p, n_layers, what);
  return p;
}

std::string format_partition(const LayerPartition& p) {
  std::string s;
  for (const auto& r : p) s += (s.empty() ? "" : ",") + r.inclusive_str();
  return s;
}

}  // namespace meshlm::model
