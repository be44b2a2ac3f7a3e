// Errors inside the library are exceptions tagged with the component that raised them:
//   throw Error("safetensors", "tensor 'x' extends past end of file");
// what() reads "[safetensors] tensor 'x' extends past end of file". They are converted to an
// exit status (CLI), an HTTP error (server) or an error frame (dist) at the boundary.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace meshlm {

class Error : public std::runtime_error {
 public:
  Error(std::string_view component, std::string_view message)
      : std::runtime_error("[" + std::string(component) + "] " + std::string(message)),
        component_(component),
        message_(message) {}
  const std::string& component() const { return component_; }
  const std::string& message() const { return message_; }  // without the "[component] " tag

 private:
  std::string component_, message_;
};

}  // namespace meshlm
