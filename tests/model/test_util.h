// Helpers for model tests: the golden model's location and reading JSON files.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace meshlm::test {

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return nlohmann::json::parse(ss.str());
}

inline bool golden_available() {
  return std::filesystem::exists(std::string(MESHLM_GOLDEN_MODEL) + "/.complete") &&
         std::filesystem::exists(std::string(MESHLM_SHARED_DIR) + "/golden/llamacpp_tiny_f32_greedy.json");
}

#define REQUIRE_GOLDEN()                                                          \
  do {                                                                            \
    if (!::meshlm::test::golden_available())                                      \
      GTEST_SKIP() << "golden model or ../shared/golden absent";                  \
  } while (0)

}  // namespace meshlm::test
