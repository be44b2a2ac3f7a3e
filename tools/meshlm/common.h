// Small helpers shared by the CLI commands.
#pragma once

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace meshlm::cli {

// Comma-separated token ids ("1,2,3"; spaces allowed). Throws Error("cli", ...) on junk.
std::vector<int32_t> parse_id_list(const std::string& text);
// --model: an existing folder as is; otherwise ORG/NAME, pulled from the Hugging Face hub into its
// standard cache when not there yet (see src/hub/hub.h). Returns the folder.
std::string resolve_model(const std::string& model_arg);
inline int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : int(n);
}

}  // namespace meshlm::cli
