// POST /v1/chat/completions and /v1/completions: request -> prompt ids -> Completion ->
// one JSON response or a stream of server-sent events.
#include <atomic>
#include <chrono>
#include <ctime>
#include <deque>
#include <random>

#include "core/error.h"
#include "core/hex.h"
#include "core/log.h"
#include "server/api_error.h"
#include "server/client_socket.h"
#include "server/completion.h"
#include "server/openai_request.h"
#include "server/server_state.h"

namespace meshlm::server {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kPoll = 50ms;  // how often a waiting handler checks its client

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  uint64_t x = (salt ^ (counter.fetch_add(1) * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
  return std::string(prefix) + to_hex(x, 16);
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(c);
  return b;
}

json chat_logprobs(const std::vector<TokenLogprob>& lps) {
  json content = json::array();
  for (auto& lp : lps) {
    json top = json::array();
    for (auto& [t, v] : lp.top)
      top.push_back({{"token", t}, {"logprob", v}, {"bytes", bytes_of(t)}});
    content.push_back({{"token", lp.token},
                       {"logprob", lp.logprob},
                       {"bytes", bytes_of(lp.token)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}};
}

// Legacy completions logprobs: parallel arrays.
struct LegacyLogprobs {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  size_t offset = 0;
  void add(const std::vector<TokenLogprob>& lps) {
    for (auto& lp : lps) {
      tokens.push_back(lp.token);
      token_logprobs.push_back(lp.logprob);
      json t = json::object();
      for (auto& [s, v] : lp.top) t[s] = v;
      top.push_back(t);
      offsets.push_back(offset);
      offset += lp.token.size();
    }
  }
  json to_json() const {
    return {{"tokens", tokens},
            {"token_logprobs", token_logprobs},
            {"top_logprobs", top},
            {"text_offset", offsets}};
  }
};

json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index) {
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json c = {{"id", calls[i].id},
              {"type", "function"},
              {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
    if (with_index) c["index"] = i;
    out.push_back(c);
  }
  return out;
}

// What every response object and stream chunk of one request carries around its choices: the
// kind of completion (chat or legacy text), id, model, creation time, and what to add.
struct ResponseEnvelope {
  bool chat = true;
  std::string id, model;
  int64_t created = 0;
  bool logprobs = false;
  bool include_usage = false;
  std::string echo;  // legacy completions with echo: the prompt text comes first
};

json usage_json(const Completion& c) {
  return {{"prompt_tokens", c.prompt_tokens()},
          {"completion_tokens", c.completion_tokens()},
          {"total_tokens", c.prompt_tokens() + c.completion_tokens()},
          {"prompt_tokens_details", {{"cached_tokens", c.cached_tokens()}}}};
}

json chunk_base(const ResponseEnvelope& s) {
  return {{"id", s.id},
          {"object", s.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", s.created},
          {"model", s.model}};
}

std::string sse(const json& j) {
  return "data: " + dump_json(j) + "\n\n";
}

// The SSE events for one step.
std::string step_events(const ResponseEnvelope& s, const CompletionStep& step,
                        const Completion& c) {
  std::string out;
  if (s.chat) {
    auto emit = [&](json delta, json logprobs, json finish) {
      json ch = chunk_base(s);
      ch["choices"] = json::array(
          {{{"index", 0}, {"delta", delta}, {"logprobs", logprobs}, {"finish_reason", finish}}});
      out += sse(ch);
    };
    if (!step.delta.reasoning.empty())
      emit({{"reasoning_content", step.delta.reasoning}}, nullptr, nullptr);
    if (!step.delta.content.empty() || !step.logprobs.empty())
      emit({{"content", step.delta.content}},
           s.logprobs && !step.logprobs.empty() ? chat_logprobs(step.logprobs) : json(nullptr),
           nullptr);
    if (!step.tool_calls.empty())
      emit({{"tool_calls", tool_calls_json(step.tool_calls, true)}}, nullptr, nullptr);
  } else if (!step.delta.content.empty() || !step.logprobs.empty()) {
    json ch = chunk_base(s);
    json lp = nullptr;
    if (s.logprobs && !step.logprobs.empty()) {
      LegacyLogprobs l;
      l.add(step.logprobs);
      lp = l.to_json();
    }
    ch["choices"] = json::array({{{"index", 0},
                                  {"text", step.delta.content},
                                  {"logprobs", lp},
                                  {"finish_reason", nullptr}}});
    out += sse(ch);
  }
  if (step.finished) {
    json ch = chunk_base(s);
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", step.finish_reason}};
    if (s.chat)
      choice["delta"] = json::object();
    else
      choice["text"] = "";
    ch["choices"] = json::array({choice});
    out += sse(ch);
    if (s.include_usage) {
      json u = chunk_base(s);
      u["choices"] = json::array();
      u["usage"] = usage_json(c);
      out += sse(u);
    }
    out += "data: [DONE]\n\n";
  }
  return out;
}

void check_stages(Server::State& st) {
  // With recovery on, a request made while a stage is down waits like the running ones do (the
  // stage comes back, or a re-plan happens, within --recovery-timeout); once the engine gave up
  // on the outage, or without recovery, it is refused at once.
  if (st.engine->options().recovery_timeout_ms > 0 && !st.engine->stats().recovery_gave_up) return;
  auto stages = st.engine->stages();
  for (size_t i = 0; i < stages.size(); ++i)
    if (stages[i].state != "ready")
      throw ApiError(503,
                     "Pipeline stage " + std::to_string(i) + " (" + stages[i].node + ", layers " +
                         std::to_string(stages[i].layers.begin) + "-" +
                         std::to_string(stages[i].layers.end) + ") is " + stages[i].state +
                         "; retry when it is back.",
                     "", "stage_unavailable");
}

// Streams the rest of a completion whose first step has arrived.
struct Stream {
  std::unique_ptr<Completion> completion;
  std::unique_ptr<ClientSocket> socket;
  ResponseEnvelope envelope;
  std::deque<CompletionStep> pending;
  bool started = false;
  bool done = false;
};

void run(Server::State& st, const httplib::Request& req, httplib::Response& res,
         const std::string& endpoint, ResponseEnvelope envelope, CompletionSetup setup,
         bool stream) {
  check_stages(st);
  auto completion =
      std::make_unique<Completion>(*st.engine, *st.tokenizer, st.metrics, std::move(setup));
  auto socket = std::make_unique<ClientSocket>(req.remote_addr, req.remote_port, req.local_addr,
                                               req.local_port);
  // Wait for the first token (or failure) before answering, so a failure before any output
  // gets its proper status even for streams.
  CompletionStep first;
  while (!completion->next(first, kPoll)) {
    if (socket->closed() || st.stopping) {
      completion->cancel();
      st.metrics.request_done(endpoint, 499);
      return;
    }
  }
  if (!first.error.empty() && !completion->any_token())
    throw ApiError(503, "The model pipeline failed: " + first.error, "", "stage_unavailable");

  if (!stream) {
    OutputDelta text;
    text.content = envelope.echo;
    std::vector<TokenLogprob> logprobs;
    std::vector<ToolCall> calls;
    CompletionStep step = std::move(first);
    std::string finish;
    for (;;) {
      text.reasoning += step.delta.reasoning;
      text.content += step.delta.content;
      logprobs.insert(logprobs.end(), step.logprobs.begin(), step.logprobs.end());
      if (step.finished) {
        if (!step.error.empty())
          throw ApiError(503, "The model pipeline failed: " + step.error, "", "stage_unavailable");
        calls = step.tool_calls;
        finish = step.finish_reason;
        break;
      }
      while (!completion->next(step, kPoll)) {
        if (socket->closed() || st.stopping) {
          completion->cancel();
          st.metrics.request_done(endpoint, 499);
          return;
        }
      }
    }
    json body = {{"id", envelope.id},
                 {"object", envelope.chat ? "chat.completion" : "text_completion"},
                 {"created", envelope.created},
                 {"model", envelope.model}};
    json choice = {{"index", 0}, {"finish_reason", finish}};
    if (envelope.chat) {
      json msg = {{"role", "assistant"}};
      msg["content"] = text.content.empty() && !calls.empty() ? json(nullptr) : json(text.content);
      if (!text.reasoning.empty()) msg["reasoning_content"] = text.reasoning;
      if (!calls.empty()) msg["tool_calls"] = tool_calls_json(calls, false);
      choice["message"] = msg;
      choice["logprobs"] = envelope.logprobs ? chat_logprobs(logprobs) : json(nullptr);
    } else {
      choice["text"] = text.content;
      if (envelope.logprobs) {
        LegacyLogprobs l;
        l.offset = envelope.echo.size();
        l.add(logprobs);
        choice["logprobs"] = l.to_json();
      } else {
        choice["logprobs"] = nullptr;
      }
    }
    body["choices"] = json::array({choice});
    body["usage"] = usage_json(*completion);
    res.set_content(dump_json(body), "application/json");
    st.metrics.request_done(endpoint, 200);
    return;
  }

  auto s = std::make_shared<Stream>();
  s->completion = std::move(completion);
  s->socket = std::move(socket);
  s->envelope = std::move(envelope);
  s->pending.push_back(std::move(first));
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  Server::State* state = &st;
  res.set_chunked_content_provider(
      "text/event-stream",
      [s, state, endpoint](size_t, httplib::DataSink& sink) {
        std::string out;
        if (!s->started) {
          s->started = true;
          if (s->envelope.chat) {
            json ch = chunk_base(s->envelope);
            ch["choices"] = json::array({{{"index", 0},
                                          {"delta", {{"role", "assistant"}, {"content", ""}}},
                                          {"logprobs", nullptr},
                                          {"finish_reason", nullptr}}});
            out += sse(ch);
          } else if (!s->envelope.echo.empty()) {
            CompletionStep echo;
            echo.delta.content = s->envelope.echo;
            out += step_events(s->envelope, echo, *s->completion);
          }
        }
        if (s->pending.empty()) {
          CompletionStep step;
          if (s->completion->next(step, kPoll)) {
            s->pending.push_back(std::move(step));
          } else if (s->socket->closed() || state->stopping) {
            s->completion->cancel();
            return false;
          }
        }
        while (!s->pending.empty()) {
          CompletionStep step = std::move(s->pending.front());
          s->pending.pop_front();
          if (step.finished && !step.error.empty()) {
            // Output has been sent already: report the failure in the stream.
            out += sse(ApiError::body("The model pipeline failed: " + step.error,
                                      "service_unavailable_error", "", "stage_unavailable"));
            out += "data: [DONE]\n\n";
            s->done = true;
          } else {
            out += step_events(s->envelope, step, *s->completion);
            s->done = step.finished;
          }
        }
        if (!out.empty() && !sink.write(out.data(), out.size())) {
          s->completion->cancel();
          return false;
        }
        if (s->done) {
          state->metrics.request_done(endpoint, 200);
          sink.done();
        }
        return true;
      },
      [s, state, endpoint](bool success) {
        if (!s->done) {
          s->completion->cancel();  // the client went away: free the KV at once
          state->metrics.request_done(endpoint, 499);
        }
      });
}

bool ends_with_think(const std::string& prompt) {
  size_t end = prompt.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) return false;
  const std::string tag = "<think>";
  return end + 1 >= tag.size() && prompt.compare(end + 1 - tag.size(), tag.size(), tag) == 0;
}

// Converts exceptions to OpenAI-shaped error responses.
template <typename Fn>
void guarded(Server::State& st, const std::string& endpoint, httplib::Response& res, Fn&& fn) {
  int status = 0;
  json body;
  try {
    fn();
    return;
  } catch (const ApiError& e) {
    status = e.status();
    body = e.to_json();
  } catch (const meshlm::Error& e) {
    // Template raise_exception() and similar: the request's content was refused.
    status = e.component() == "template" ? 400 : 500;
    body = ApiError::body(e.what(), status == 400 ? "invalid_request_error" : "server_error");
  } catch (const std::exception& e) {
    status = 500;
    body = ApiError::body(std::string("internal error: ") + e.what(), "server_error");
    log::error("[server] {} failed: {}", endpoint, e.what());
  }
  res.status = status;
  res.set_content(dump_json(body), "application/json");
  st.metrics.request_done(endpoint, status);
}

}  // namespace

void handle_chat_completions(Server::State& st, const httplib::Request& req,
                             httplib::Response& res) {
  guarded(st, "chat_completions", res, [&] {
    ChatRequest r = parse_chat_request(req.body);
    if (!st.chat_template)
      throw ApiError(400, "This model has no chat template; use /v1/completions instead.");
    nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(st.base_context.dump());
    ctx["messages"] = r.messages;
    ctx["add_generation_prompt"] = true;
    const bool tools = !r.tools.is_null() && !r.tool_choice_none;
    if (tools) ctx["tools"] = r.tools;
    for (auto& [k, v] : r.template_kwargs.items()) ctx[k] = v;
    const std::string prompt = st.chat_template->render(ctx);
    CompletionSetup setup;
    setup.prompt = st.tokenizer->encode(prompt, false);
    setup.gen = r.gen;
    setup.eos_ids = st.eos_ids;
    setup.tools = tools ? st.tool_syntax : ToolSyntax::None;
    setup.parse_reasoning = st.options.parse_reasoning;
    setup.starts_in_reasoning = ends_with_think(prompt);
    // Structured outputs: a forced tool call constrains the whole reply to the call's syntax with
    // the tool's parameters schema; otherwise response_format, when it asks for JSON.
    if (tools && (r.tool_choice_required || !r.tool_choice_function.empty()))
      setup.constraint =
          st.structured->for_tool_call(r.tools, r.tool_choice_function, st.tool_syntax);
    else
      setup.constraint = st.structured->for_response_format(r.gen.response_format);
    // A constrained reply has no reasoning block, even after a prompt that opened one (templates
    // of thinking models): all of it is content (or tool calls).
    if (setup.constraint) setup.parse_reasoning = false;
    ResponseEnvelope envelope;
    envelope.chat = true;
    envelope.id = random_id("chatcmpl-");
    envelope.model = st.options.model_name;
    envelope.created = static_cast<int64_t>(std::time(nullptr));
    envelope.logprobs = r.gen.sampling.logprobs;
    envelope.include_usage = r.gen.include_usage;
    run(st, req, res, "chat_completions", std::move(envelope), std::move(setup), r.gen.stream);
  });
}

void handle_completions(Server::State& st, const httplib::Request& req, httplib::Response& res) {
  guarded(st, "completions", res, [&] {
    CompletionRequest r = parse_completion_request(req.body);
    CompletionSetup setup;
    if (r.prompt_ids.empty()) {
      setup.prompt = st.tokenizer->encode(r.prompt, true);
    } else {
      const auto vocab = static_cast<int64_t>(st.engine->config().vocab);
      for (auto id : r.prompt_ids)
        if (vocab > 0 && id >= vocab)
          throw ApiError(400,
                         "Token id " + std::to_string(id) + " is outside the vocabulary (" +
                             std::to_string(vocab) + " tokens).",
                         "prompt");
      setup.prompt = r.prompt_ids;
    }
    setup.gen = r.gen;
    setup.eos_ids = st.eos_ids;
    setup.tools = ToolSyntax::None;
    setup.parse_reasoning = false;
    setup.constraint = st.structured->for_response_format(r.gen.response_format);
    ResponseEnvelope envelope;
    envelope.chat = false;
    envelope.id = random_id("cmpl-");
    envelope.model = st.options.model_name;
    envelope.created = static_cast<int64_t>(std::time(nullptr));
    envelope.logprobs = r.gen.sampling.logprobs;
    envelope.include_usage = r.gen.include_usage;
    if (r.echo)
      envelope.echo = r.prompt_ids.empty() ? r.prompt : st.tokenizer->decode(r.prompt_ids, false);
    run(st, req, res, "completions", std::move(envelope), std::move(setup), r.gen.stream);
  });
}

}  // namespace meshlm::server
