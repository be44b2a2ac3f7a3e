#include "common.h"

#include "hub/hub.h"

#include <cstdlib>

#include "core/error.h"
#include "kernels/kernels.h"

namespace meshlm::cli {

namespace {
std::vector<int64_t> parse_numbers(const std::string& text, const char* what) {
  std::vector<int64_t> out;
  const char* p = text.c_str();
  while (*p) {
    while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '[' || *p == ']') ++p;
    if (!*p) break;
    char* end = nullptr;
    long long v = std::strtoll(p, &end, 10);
    if (end == p || v < 0 || v > INT32_MAX)
      throw Error("cli", std::string("bad ") + what + " near '" + std::string(p).substr(0, 16) + "'");
    out.push_back(v);
    p = end;
  }
  return out;
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

std::string compute_backend() {
  return std::string("cpu/") + kernels::simd_target_name();
}

}  // namespace meshlm::cli
