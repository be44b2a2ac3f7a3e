// Errors returned to API clients, in OpenAI's shape:
//   {"error": {"message": "...", "type": "invalid_request_error", "param": "messages", "code":
//   null}}
// Handlers throw ApiError; the HTTP layer turns it into the response with its status.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace meshlm::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {},
           std::string type = {})
      : std::runtime_error(message),
        status_(status),
        param_(std::move(param)),
        code_(std::move(code)),
        type_(type.empty() ? default_type(status) : std::move(type)) {}

  int status() const { return status_; }
  nlohmann::json to_json() const { return body(what(), type_, param_, code_); }

  static nlohmann::json body(const std::string& message, const std::string& type,
                             const std::string& param = {}, const std::string& code = {}) {
    nlohmann::json e = {{"message", message}, {"type", type}};
    e["param"] = param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param);
    e["code"] = code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code);
    return {{"error", e}};
  }
  static std::string default_type(int status) {
    switch (status) {
      case 401:
        return "authentication_error";
      case 404:
        return "not_found_error";
      case 429:
        return "rate_limit_error";
      case 503:
        return "service_unavailable_error";
      default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
  }

 private:
  int status_;
  std::string param_, code_, type_;
};

}  // namespace meshlm::server
