// Reading a whole JSON file with errors tagged by the calling component.
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace meshlm {

// Throws Error(component, "cannot open 'path'<hint>") or Error(component, "'path' is not valid
// JSON: ...").
inline nlohmann::json read_json_file(const std::string& path, std::string_view component,
                                     std::string_view open_hint = {}) {
  std::ifstream f(path);
  if (!f) throw Error(component, "cannot open '" + path + "'" + std::string(open_hint));
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw Error(component, "'" + path + "' is not valid JSON: " + e.what());
  }
}

}  // namespace meshlm
