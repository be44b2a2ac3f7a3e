#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace meshlm::log {

void set_level(const std::string& name) {
  static bool initialised = [] {
    auto logger = spdlog::stderr_color_mt("meshlm");
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("%H:%M:%S.%e %^%l%$ %v");
    return true;
  }();
  (void)initialised;
  auto level = spdlog::level::from_str(name);
  if (level != spdlog::level::off || name == "off") spdlog::set_level(level);
}

}  // namespace meshlm::log
