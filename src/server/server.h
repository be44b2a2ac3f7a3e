// The OpenAI-compatible HTTP server (cpp-httplib): /v1/chat/completions, /v1/completions,
// /v1/models, /health, /metrics and the embedded web page. JSON, chat templates and text live
// here; the Engine only sees token ids.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "runtime/engine.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8100;         // 0: any free port (see Server::port())
  std::string api_key;     // empty: no authentication
  std::string model_name;  // the id /v1/models reports
  std::string model_dir;   // for the chat template context and generation_config.json
  size_t max_body_bytes = 8u << 20;
  int http_threads = 0;         // 0: enough for every active and queued request
  bool parse_reasoning = true;  // <think>...</think> -> reasoning_content
};

class Server {
 public:
  // chat_template may be null (then /v1/chat/completions answers 400).
  Server(std::unique_ptr<runtime::Engine> engine, std::unique_ptr<tok::Tokenizer> tokenizer,
         std::unique_ptr<tmpl::ChatTemplate> chat_template, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; throws Error("server", ...) when it cannot. Returns the port.
  int bind();
  int port() const;
  // Serves until stop() (from another thread or a signal handler's thread).
  void run();
  void stop();

  struct State;  // shared with the request handlers (server_state.h)

 private:
  std::unique_ptr<State> state_;
};

}  // namespace meshlm::server
