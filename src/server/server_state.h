// What the request handlers share (internal to server/).
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "server/metrics.h"
#include "server/output_parser.h"
#include "server/server.h"
#include "server/structured_output.h"

namespace meshlm::server {

struct Server::State {
  std::unique_ptr<runtime::Engine> engine;
  std::unique_ptr<tok::Tokenizer> tokenizer;
  std::unique_ptr<tmpl::ChatTemplate> chat_template;
  ServerOptions options;
  nlohmann::json base_context = nlohmann::json::object();  // bos_token, eos_token, ...
  std::vector<int32_t> eos_ids;
  ToolSyntax tool_syntax = ToolSyntax::Hermes;
  std::unique_ptr<StructuredOutputs> structured;  // response_format / forced tool calls
  int64_t created = 0;  // unix time the server started
  Metrics metrics;
  std::atomic<bool> stopping{false};  // stop(): waiting handlers give up
  httplib::Server http;
};

// JSON text for responses: invalid UTF-8 is replaced instead of throwing.
inline std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// POST /v1/chat/completions and /v1/completions (openai_handlers.cpp).
void handle_chat_completions(Server::State& state, const httplib::Request& req,
                             httplib::Response& res);
void handle_completions(Server::State& state, const httplib::Request& req, httplib::Response& res);

}  // namespace meshlm::server
