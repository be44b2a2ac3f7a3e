// Helpers for model tests: the golden model's location and reading JSON files.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"

namespace meshlm::test {

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return nlohmann::json::parse(ss.str());
}

// The test model exists (from ../shared's generator, or `meshlm synth` without ../shared).
inline bool model_available() {
  return std::filesystem::exists(std::string(MESHLM_GOLDEN_MODEL) + "/.complete");
}

// The test model is the one ../shared/golden was computed on, and the goldens are there.
inline bool golden_available() {
  return model_available() &&
         !std::filesystem::exists(std::string(MESHLM_GOLDEN_MODEL) + "/.not-golden") &&
         std::filesystem::exists(std::string(MESHLM_SHARED_DIR) + "/golden/llamacpp_tiny_f32_greedy.json");
}

#define REQUIRE_MODEL()                                                           \
  do {                                                                            \
    if (!::meshlm::test::model_available()) GTEST_SKIP() << "test model absent";  \
  } while (0)

#define REQUIRE_GOLDEN()                                                          \
  do {                                                                            \
    if (!::meshlm::test::golden_available())                                      \
      GTEST_SKIP() << "golden model or ../shared/golden absent";                  \
  } while (0)

// The message ModelConfig::from_json throws for j, "" when it accepts it.
inline std::string config_error(const nlohmann::json& j) {
  try {
    model::ModelConfig::from_json(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace meshlm::test
