// One levelled logging facility for the whole library: a thin wrapper over spdlog.
// Library code never prints to stdout; logs go to stderr.
#pragma once

#include <spdlog/spdlog.h>

namespace meshlm::log {

// Level from a name ("trace".."off"); unknown names leave the level unchanged.
void set_level(const std::string& name);
// The library's logger (stderr), made on first use: a program that never calls set_level (a
// test or bench tool printing results on stdout) still gets no log line on its stdout.
spdlog::logger& logger();

template <typename... Args>
void info(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  logger().info(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  logger().warn(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void error(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  logger().error(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void debug(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  logger().debug(fmt, std::forward<Args>(args)...);
}

}  // namespace meshlm::log
