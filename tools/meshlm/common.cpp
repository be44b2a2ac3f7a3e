#include "common.h"

#include "hub/hub.h"

#include <cstdlib>

#include "core/error.h"
#include "cluster/layout.h"

namespace meshlm::cli {

namespace {
std::vector<int64_t> parse_numbers(const std::string& text, const char* what) {
  return cluster::parse_number_list(text, what);
}
}  // namespace

std::vector<int32_t> parse_id_list(const std::string& text) {
  auto v = parse_numbers(text, "token id");
  return std::vector<int32_t>(v.begin(), v.end());
}

std::vector<int64_t> parse_splits(const std::string& text) { return parse_numbers(text, "layer split"); }

std::string resolve_model(const std::string& model_arg) {
  return hub::resolve_model_dir(model_arg, hub::PullOptions::from_env());
}

std::string compute_backend() { return cluster::compute_backend(); }

}  // namespace meshlm::cli
