// Parsing and validation of OpenAI request bodies (/v1/chat/completions, /v1/completions) into
// plain structs. Every client mistake becomes an ApiError(400, ..., param); unknown fields are
// ignored, as OpenAI-compatible servers do.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/sampler.h"

namespace meshlm::server {

// response_format: free text, any JSON object, or JSON valid under a schema.
struct ResponseFormat {
  enum class Kind { Text, JsonObject, JsonSchema } kind = Kind::Text;
  nlohmann::ordered_json schema;  // JsonSchema: json_schema.schema (the client's key order)
};

// What both endpoints share.
struct GenerationParams {
  runtime::SamplingParams sampling;
  std::optional<int64_t> max_tokens;  // absent: until the context is full
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  ResponseFormat response_format;
};

struct ChatRequest {
  GenerationParams gen;
  nlohmann::ordered_json messages;  // normalised: content is a string (or null), roles checked
  nlohmann::ordered_json tools;     // null when absent
  bool tool_choice_none = false;
  bool tool_choice_required = false;  // the reply is constrained to one tool call
  std::string tool_choice_function;   // a named function (validated against tools); constrained
  nlohmann::ordered_json template_kwargs = nlohmann::ordered_json::object();  // chat_template_kwargs
};

struct CompletionRequest {
  GenerationParams gen;
  std::string prompt;               // when the prompt is text
  std::vector<int32_t> prompt_ids;  // when the prompt is token ids
  bool echo = false;
};

// Throw ApiError(400) for malformed bodies. `body` is the raw request text.
ChatRequest parse_chat_request(const std::string& body);
CompletionRequest parse_completion_request(const std::string& body);

}  // namespace meshlm::server
