// libFuzzer target: OpenAI request bodies (server/openai_request.h) as the HTTP handlers use
// them. Byte 0 picks the endpoint and, for chat, one of five real chat templates
// (template_files.h); the rest is the body.
//   /v1/chat/completions: parse_chat_request (messages and their content parts, tool_calls with
//     JSON-string arguments, tools, tool_choice, chat_template_kwargs, sampling fields, stop,
//     stream_options, ...), then, as handle_chat_completions does, the normalised messages,
//     tools and kwargs rendered through the template (a hostile context) and the prompt encoded.
//   /v1/completions: parse_completion_request (text or token-id prompts, logprobs, echo, ...).
// Bodies must parse or throw ApiError(400); a template may refuse with meshlm::Error
// (raise_exception). Anything else is a crash. Parsed values must lie inside the ranges the
// parser promises.
#include <cstddef>
#include <cstdint>
#include <string>

#include "../tokenizer/test_tokenizers.h"
#include "core/error.h"
#include "fuzz_common.h"
#include "server/api_error.h"
#include "server/openai_request.h"
#include "template_files.h"
#include "tokenizer/tokenizer.h"

using namespace meshlm::server;
using meshlm::fuzz::require;

namespace {

const meshlm::tok::Tokenizer& tokenizer() {
  static auto tok = meshlm::tok::Tokenizer::load_from_json(meshlm::tok::testing::byte_level_json());
  return *tok;
}

void check_common(const GenerationParams& g) {
  const auto& s = g.sampling;
  require(s.temperature >= 0 && s.temperature <= 2 && s.top_p >= 0 && s.top_p <= 1);
  require(s.top_k >= 0 && s.min_p >= 0 && s.min_p <= 1);
  require(s.top_logprobs >= 0 && s.top_logprobs <= 20);
  require(!g.max_tokens || *g.max_tokens >= 1);
  require(g.stop.size() <= 16);
  for (const auto& x : g.stop) require(!x.empty());
}

void chat(const std::string& body, size_t template_index) {
  ChatRequest r = parse_chat_request(body);
  check_common(r.gen);
  require(r.messages.is_array() && !r.messages.empty());
  for (const auto& m : r.messages) {
    require(m.is_object() && m["content"].is_string());
    const std::string role = m["role"];
    require(role == "system" || role == "user" || role == "assistant" || role == "tool");
  }
  require(r.tools.is_null() || r.tools.is_array());
  // As handle_chat_completions builds the template context.
  nlohmann::ordered_json ctx = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
  ctx["messages"] = r.messages;
  ctx["add_generation_prompt"] = true;
  if (!r.tools.is_null() && !r.tool_choice_none) ctx["tools"] = r.tools;
  for (auto& [k, v] : r.template_kwargs.items()) ctx[k] = v;
  const auto& templates = meshlm::fuzz::chat_templates();
  const std::string prompt = templates[template_index % templates.size()]->render(ctx);
  auto ids = tokenizer().encode(prompt, false);
  (void)tokenizer().decode(ids, false);
}

void completion(const std::string& body) {
  CompletionRequest r = parse_completion_request(body);
  check_common(r.gen);
  for (auto id : r.prompt_ids) require(id >= 0);
  if (r.prompt_ids.empty()) (void)tokenizer().encode(r.prompt, true);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  meshlm::fuzz::quiet_logs();
  (void)tokenizer();
  (void)meshlm::fuzz::chat_templates();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] & 1)
      completion(body);
    else
      chat(body, data[0] >> 1);
  } catch (const ApiError& e) {
    require(e.status() == 400);
  } catch (const meshlm::Error&) {
  }
  return 0;
}
