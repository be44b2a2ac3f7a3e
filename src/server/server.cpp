#include "server/server.h"

#include <algorithm>
#include <ctime>
#include <fstream>

#include "core/error.h"
#include "core/log.h"
#include "core/sysinfo.h"
#include "model/kv_cache.h"
#include "server/api_error.h"
#include "server/http_thread_pool.h"
#include "server/server_state.h"
#include "server/web_assets.h"

namespace meshlm::server {
namespace {

using nlohmann::json;

// Token ids that end a reply: config.json, generation_config.json, the tokenizer's EOS, and the
// end-of-turn markers chat templates use.
std::vector<int32_t> collect_eos(const Server::State& st) {
  std::vector<int32_t> ids;
  auto add = [&](int64_t id) {
    if (id >= 0 && std::find(ids.begin(), ids.end(), id) == ids.end())
      ids.push_back(static_cast<int32_t>(id));
  };
  for (auto id : st.engine->config().eos_ids) add(id);
  if (auto id = st.tokenizer->eos_id()) add(*id);
  if (!st.options.model_dir.empty()) {
    std::ifstream f(st.options.model_dir + "/generation_config.json");
    if (f) {
      json g = json::parse(f, nullptr, false);
      if (g.is_object() && g.contains("eos_token_id")) {
        const json& e = g["eos_token_id"];
        if (e.is_number_integer()) add(e.get<int64_t>());
        if (e.is_array())
          for (auto& x : e)
            if (x.is_number_integer()) add(x.get<int64_t>());
      }
    }
  }
  for (const char* t :
       {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"})
    if (auto id = st.tokenizer->token_to_id(t)) add(*id);
  return ids;
}

bool authorised(const Server::State& st, const httplib::Request& req) {
  if (st.options.api_key.empty()) return true;
  std::string given = req.get_header_value("Authorization");
  const std::string bearer = "Bearer ";
  if (given.compare(0, bearer.size(), bearer) == 0)
    given = given.substr(bearer.size());
  else
    given = req.get_header_value("x-api-key");
  const std::string& want = st.options.api_key;
  unsigned diff = given.size() != want.size();
  for (size_t i = 0; i < want.size(); ++i) diff |= want[i] ^ (i < given.size() ? given[i] : 0);
  return diff == 0;
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(dump_json(e.to_json()), "application/json");
}

json health_json(const Server::State& st, bool& healthy) {
  healthy = true;
  json stages = json::array();
  for (auto& s : st.engine->stages()) {
    healthy &= s.state == "ready";
    stages.push_back({{"node", s.node},
                      {"layers", json::array({s.layers.begin, s.layers.end})},
                      {"state", s.state},
                      {"memory_bytes", s.memory_bytes},
                      {"busy_seconds", s.busy_seconds},
                      {"transfer_seconds", s.transfer_seconds}});
  }
  const auto stats = st.engine->stats();
  const auto& cfg = st.engine->config();
  return {{"status", healthy ? "ok" : "degraded"},
          {"model", st.options.model_name},
          {"architecture", cfg.model_type},
          {"n_layers", cfg.n_layers},
          {"context", st.engine->options().max_context},
          {"stages", stages},
          {"queued", stats.queued},
          {"active", stats.active},
          {"max_active", st.engine->options().max_active},
          // A lost stage: requests are paused (not failed) while it comes back or is re-planned.
          {"recovering", stats.recovering},
          {"recoveries", stats.recoveries_total},
          {"replayed_sequences", stats.replayed_total},
          {"kv_tokens", stats.kv_tokens},
          {"kv_cache_type", std::string(model::kv_type_name(st.engine->kv_type()))},
          {"kv_budget_tokens", st.engine->options().kv_budget_tokens},
          {"preemptions", stats.preemptions_total},
          {"prefix_cache",
           {{"blocks", stats.prefix_cache_blocks},
            {"bytes", stats.prefix_cache_bytes},
            {"budget_bytes", st.engine->options().prefix_cache_bytes},
            {"hit_tokens", stats.prefix_cache_hit_tokens_total},
            {"hits", stats.prefix_cache_hits_total}}}};
}

}  // namespace

Server::Server(std::unique_ptr<runtime::Engine> engine, std::unique_ptr<tok::Tokenizer> tokenizer,
               std::unique_ptr<tmpl::ChatTemplate> chat_template, ServerOptions options)
    : state_(std::make_unique<State>()) {
  if (!engine || !tokenizer) throw Error("server", "an engine and a tokenizer are required");
  State& st = *state_;
  st.engine = std::move(engine);
  st.tokenizer = std::move(tokenizer);
  st.chat_template = std::move(chat_template);
  st.options = std::move(options);
  if (st.options.model_name.empty()) st.options.model_name = "meshlm";
  st.created = static_cast<int64_t>(std::time(nullptr));
  st.eos_ids = collect_eos(st);
  st.structured = std::make_unique<StructuredOutputs>(
      *st.tokenizer, static_cast<size_t>(st.engine->config().vocab), st.eos_ids);
  st.tool_syntax =
      st.engine->config().model_type == "llama" ? ToolSyntax::LlamaJson : ToolSyntax::Hermes;
  st.base_context = {{"bos_token", st.tokenizer->bos_token()},
                     {"eos_token", st.tokenizer->eos_token()}};
  if (!st.options.model_dir.empty()) {
    try {
      st.base_context = tmpl::default_context(st.options.model_dir, st.base_context);
    } catch (const std::exception& e) {
      log::warn("[server] chat template context: {}", e.what());
    }
  }

  // Request handlers allocate small, short-lived objects (JSON, text); two shared malloc arenas
  // instead of glibc's 8 per core keep the resident size flat across bursts of connections
  // (load test: 1.9 MB less anonymous memory, and no creep between runs).
  sys::limit_allocator_arenas(2);

  const auto& opt = st.options;
  const auto& eng = st.engine->options();
  const int threads =
      opt.http_threads > 0
          ? opt.http_threads
          : static_cast<int>(std::min<int64_t>(eng.max_active + eng.max_queue + 8, 512));
  // Threads start with connections and end when idle (http_thread_pool.h); once the extra ones have
  // gone, the allocator hands their memory back to the OS.
  st.http.new_task_queue = [threads] {
    HttpThreadPoolOptions pool;
    pool.max_threads = static_cast<size_t>(threads);
    pool.on_quiet = [] { sys::release_free_memory(); };
    return new HttpThreadPool(std::move(pool));  // httplib owns and deletes its task queue
  };
  st.http.set_payload_max_length(opt.max_body_bytes);
  st.http.set_write_timeout(30, 0);

  st.http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    State& st = *state_;
    if (req.path.rfind("/v1/", 0) == 0 && !authorised(st, req)) {
      send_error(
          res,
          ApiError(401, "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.", "",
                   "invalid_api_key"));
      st.metrics.request_done("auth", 401);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Statuses httplib produces itself (unknown route, body too large) get OpenAI-shaped bodies.
  st.http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                        httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message;
    if (res.status == 413)
      message = "Request body too large: the limit is " +
                std::to_string(state_->options.max_body_bytes) + " bytes.";
    else if (res.status == 404)
      message = "Unknown request URL: " + req.method + " " + req.path + ".";
    else
      message = "HTTP " + std::to_string(res.status) + " for " + req.method + " " + req.path + ".";
    send_error(res, ApiError(res.status, message));
    return httplib::Server::HandlerResponse::Handled;
  }));
  st.http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        send_error(res, ApiError(500, "internal error: " + what));
      });

  st.http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_chat_completions(*state_, req, res);
  });
  st.http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_completions(*state_, req, res);
  });
  st.http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    const State& st = *state_;
    json model = {{"id", st.options.model_name},
                  {"object", "model"},
                  {"created", st.created},
                  {"owned_by", "meshlm"},
                  {"max_model_len", st.engine->options().max_context}};
    res.set_content(dump_json({{"object", "list"}, {"data", json::array({model})}}),
                    "application/json");
  });
  st.http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    bool healthy = true;
    json body = health_json(*state_, healthy);
    res.status = healthy ? 200 : 503;
    res.set_content(dump_json(body), "application/json");
  });
  st.http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    const State& st = *state_;
    res.set_content(st.metrics.render(st.engine->stats(), st.engine->stages()),
                    "text/plain; version=0.0.4");
  });
  for (const WebAsset& asset : web_assets()) {
    auto serve = [&asset](const httplib::Request&, httplib::Response& res) {
      res.set_content(reinterpret_cast<const char*>(asset.data), asset.size, asset.mime);
    };
    st.http.Get(asset.path, serve);
    if (std::string(asset.path) == "/index.html") st.http.Get("/", serve);
  }
}

Server::~Server() {
  stop();
  // The engine goes first: its destructor finishes every request, releasing waiting handlers.
  state_->engine.reset();
}

int Server::bind() {
  State& st = *state_;
  int port = st.options.port;
  if (port == 0) {
    port = st.http.bind_to_any_port(st.options.host);
  } else if (!st.http.bind_to_port(st.options.host, port)) {
    port = -1;
  }
  if (port <= 0)
    throw Error("server", "cannot listen on " + st.options.host + ":" +
                              std::to_string(st.options.port) + " (in use, or no permission?)");
  st.options.port = port;
  return port;
}

int Server::port() const {
  return state_->options.port;
}

void Server::run() {
  state_->http.listen_after_bind();
}

void Server::stop() {
  state_->stopping = true;
  if (state_->http.is_running()) state_->http.stop();
}

}  // namespace meshlm::server
