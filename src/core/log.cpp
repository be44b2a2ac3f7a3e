#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace meshlm::log {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> made = [] {
    auto l = spdlog::stderr_color_mt("meshlm");
    l->set_pattern("%H:%M:%S.%e %^%l%$ %v");
    spdlog::set_default_logger(l);
    return l;
  }();
  return *made;
}

void set_level(const std::string& name) {
  auto level = spdlog::level::from_str(name);
  if (level != spdlog::level::off || name == "off") logger().set_level(level);
}

}  // namespace meshlm::log
