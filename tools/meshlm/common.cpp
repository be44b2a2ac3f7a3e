#include "common.h"

#include "hub/hub.h"

#include <cstdlib>
#include <filesystem>

#include "cluster/layout.h"
#include "core/error.h"

namespace meshlm::cli {

std::vector<int32_t> parse_id_list(const std::string& text) {
  auto v = cluster::parse_number_list(text, "token id");
  return std::vector<int32_t>(v.begin(), v.end());
}

std::string resolve_model(const std::string& model_arg) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(model_arg, ec)) return model_arg;  // a .gguf file
  return hub::resolve_model_dir(model_arg, hub::PullOptions::from_env());
}

}  // namespace meshlm::cli
