#include "server/openai_request.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "server/api_error.h"

namespace meshlm::server {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param);
}

json parse_body(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    bad("",
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
        "sent was not valid JSON.)");
  if (!j.is_object()) bad("", "The request body must be a JSON object.");
  return j;
}

bool present(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && !it->is_null();
}

double number(const json& j, const char* key, double lo, double hi) {
  const json& v = j.at(key);
  if (!v.is_number())
    bad(key, std::string("'") + key + "' must be a number, got " + v.dump() + ".");
  double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(key, std::string("'") + key + "' must be between " + json(lo).dump() + " and " +
                 json(hi).dump() + ", got " + v.dump() + ".");
  return x;
}

int64_t integer(const json& j, const char* key, int64_t lo, int64_t hi) {
  const json& v = j.at(key);
  if (!v.is_number_integer() &&
      !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
    bad(key, std::string("'") + key + "' must be an integer, got " + v.dump() + ".");
  double x = v.get<double>();
  if (x < static_cast<double>(lo) || x > static_cast<double>(hi))
    bad(key, std::string("'") + key + "' must be between " + std::to_string(lo) + " and " +
                 std::to_string(hi) + ", got " + v.dump() + ".");
  return v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)
             ? hi
             : static_cast<int64_t>(x);
}

bool boolean(const json& j, const char* key) {
  const json& v = j.at(key);
  if (!v.is_boolean())
    bad(key, std::string("'") + key + "' must be a boolean, got " + v.dump() + ".");
  return v.get<bool>();
}

// Fields both endpoints accept.
GenerationParams parse_common(const json& j) {
  GenerationParams g;
  auto& s = g.sampling;
  if (present(j, "temperature")) s.temperature = static_cast<float>(number(j, "temperature", 0, 2));
  if (present(j, "top_p")) s.top_p = static_cast<float>(number(j, "top_p", 0, 1));
  if (present(j, "top_k")) s.top_k = static_cast<int32_t>(integer(j, "top_k", -1, 1 << 30));
  if (s.top_k < 0) s.top_k = 0;
  if (present(j, "min_p")) s.min_p = static_cast<float>(number(j, "min_p", 0, 1));
  if (present(j, "presence_penalty"))
    s.presence_penalty = static_cast<float>(number(j, "presence_penalty", -2, 2));
  if (present(j, "frequency_penalty"))
    s.frequency_penalty = static_cast<float>(number(j, "frequency_penalty", -2, 2));
  if (present(j, "repetition_penalty"))
    s.repetition_penalty = static_cast<float>(number(j, "repetition_penalty", 0.01, 10));
  if (present(j, "seed")) {
    const json& v = j.at("seed");
    if (!v.is_number_integer()) bad("seed", "'seed' must be an integer, got " + v.dump() + ".");
    s.seed = v.is_number_unsigned() ? v.get<uint64_t>() : static_cast<uint64_t>(v.get<int64_t>());
    s.has_seed = true;
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"})
    if (present(j, key)) g.max_tokens = integer(j, key, 1, std::numeric_limits<int32_t>::max());
  if (present(j, "stop")) {
    const json& v = j.at("stop");
    if (v.is_string()) {
      g.stop.push_back(v.get<std::string>());
    } else if (v.is_array()) {
      if (v.size() > 16) bad("stop", "'stop' may hold at most 16 strings.");
      for (auto& x : v) {
        if (!x.is_string()) bad("stop", "'stop' must be a string or a list of strings.");
        g.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", "'stop' must be a string or a list of strings, got " + v.dump() + ".");
    }
    std::erase_if(g.stop, [](const std::string& x) { return x.empty(); });
  }
  if (present(j, "ignore_eos")) g.ignore_eos = boolean(j, "ignore_eos");
  if (present(j, "stream")) g.stream = boolean(j, "stream");
  if (present(j, "stream_options")) {
    const json& o = j.at("stream_options");
    if (!o.is_object()) bad("stream_options", "'stream_options' must be an object.");
    if (present(o, "include_usage")) {
      if (!o.at("include_usage").is_boolean())
        bad("stream_options.include_usage", "'stream_options.include_usage' must be a boolean.");
      g.include_usage = o.at("include_usage").get<bool>();
    }
  }
  if (present(j, "n") && integer(j, "n", 1, 128) != 1)
    bad("n", "Only n=1 is supported; ask for several completions with several requests.");
  return g;
}

// response_format, read from the key-order-preserving parse (a schema's properties are generated
// in the client's order). The schema itself is checked when it is compiled (structured_output).
ResponseFormat parse_response_format(const nlohmann::ordered_json& j) {
  ResponseFormat f;
  auto it = j.find("response_format");
  if (it == j.end() || it->is_null()) return f;
  const auto& rf = *it;
  if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string())
    bad("response_format", "'response_format' must be an object with a 'type'.");
  const std::string type = rf["type"].get<std::string>();
  if (type == "text") return f;
  if (type == "json_object") {
    f.kind = ResponseFormat::Kind::JsonObject;
    return f;
  }
  if (type != "json_schema")
    bad("response_format.type", "'response_format.type' must be 'text', 'json_object' or "
                                "'json_schema'; got '" + type + "'.");
  if (!rf.contains("json_schema") || !rf["json_schema"].is_object())
    bad("response_format.json_schema",
        "'response_format' of type 'json_schema' needs a 'json_schema' object.");
  const auto& js = rf["json_schema"];
  if (js.contains("name") && !js["name"].is_string())
    bad("response_format.json_schema.name", "'response_format.json_schema.name' must be a string.");
  if (!js.contains("schema") || !(js["schema"].is_object() || js["schema"].is_boolean()))
    bad("response_format.json_schema.schema",
        "'response_format.json_schema.schema' must be a JSON Schema object.");
  f.kind = ResponseFormat::Kind::JsonSchema;
  f.schema = js["schema"];
  return f;
}

// Message content: a string, or a list of text parts joined with newlines.
template <class J>
J normalise_content(const J& content, size_t index, const std::string& role) {
  const std::string param = "messages[" + std::to_string(index) + "].content";
  if (content.is_string() || content.is_null()) return content;
  if (!content.is_array())
    bad(param, "'" + param + "' must be a string or a list of content parts.");
  std::string text;
  bool first = true;
  for (auto& part : content) {
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      bad(param, "Each content part must be an object with a 'type'.");
    const std::string type = part["type"];
    if (type != "text")
      bad(param,
          "Content part type '" + type + "' is not supported; this server accepts text only.");
    if (!part.contains("text") || !part["text"].is_string())
      bad(param, "A text content part needs a string 'text'.");
    if (!first) text += "\n";
    text += part["text"].template get<std::string>();
    first = false;
  }
  return text;
}

template <class J>
J normalise_messages(const J& j) {
  if (!j.contains("messages")) bad("messages", "Missing required parameter: 'messages'.");
  const J& in = j.at("messages");
  if (!in.is_array()) bad("messages", "'messages' must be a list of message objects.");
  if (in.empty()) bad("messages", "'messages' must contain at least one message.");
  J out = J::array();
  for (size_t i = 0; i < in.size(); ++i) {
    const J& m = in[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(at, "'" + at + "' must be an object.");
    if (!m.contains("role") || !m["role"].is_string())
      bad(at + ".role", "'" + at + ".role' is required and must be a string.");
    std::string role = m["role"];
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      bad(at + ".role", "Invalid value for '" + at + ".role': '" + role +
                            "'. Supported roles are system, developer, user, assistant and tool.");
    J msg = m;
    msg["role"] = role;
    J content = m.contains("content") ? m["content"] : J(nullptr);
    msg["content"] = normalise_content(content, i, role);
    // Templates test and concatenate content; null (assistant tool calls) becomes "".
    if (msg["content"].is_null()) msg["content"] = "";
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      if (!m["tool_calls"].is_array()) bad(at + ".tool_calls", "'tool_calls' must be a list.");
      J calls = J::array();
      for (const J& call : m["tool_calls"]) {
        if (!call.is_object() || !call.contains("function") || !call["function"].is_object())
          bad(at + ".tool_calls", "Each tool call needs a 'function' object.");
        J c = call;
        // Templates expect arguments as an object (transformers' convention); OpenAI sends a
        // JSON string.
        J& args = c["function"]["arguments"];
        if (args.is_string()) {
          J parsed = J::parse(args.template get<std::string>(), nullptr, false);
          if (!parsed.is_discarded()) args = parsed;
        }
        calls.push_back(c);
      }
      msg["tool_calls"] = calls;
    }
    out.push_back(msg);
  }
  return out;
}

}  // namespace

ChatRequest parse_chat_request(const std::string& body) {
  json j = parse_body(body);
  ChatRequest r;
  normalise_messages(j);  // validates; the prompt is built from the key-order-preserving parse
  // JSON key order is visible in prompts (tools | tojson), so keep the client's order.
  const auto oj = nlohmann::ordered_json::parse(body, nullptr, false);
  r.messages = normalise_messages(oj);
  r.gen = parse_common(j);
  r.gen.response_format = parse_response_format(oj);
  if (present(j, "logprobs")) r.gen.sampling.logprobs = boolean(j, "logprobs");
  if (present(j, "top_logprobs")) {
    r.gen.sampling.top_logprobs = static_cast<int32_t>(integer(j, "top_logprobs", 0, 20));
    if (r.gen.sampling.top_logprobs > 0 && !r.gen.sampling.logprobs)
      bad("top_logprobs", "'top_logprobs' requires 'logprobs' to be true.");
  }
  if (present(j, "tools")) {
    const json& t = j.at("tools");
    if (!t.is_array()) bad("tools", "'tools' must be a list of tool objects.");
    for (size_t i = 0; i < t.size(); ++i) {
      const json& tool = t[i];
      if (!tool.is_object() || !tool.contains("function") || !tool["function"].is_object() ||
          !tool["function"].contains("name") || !tool["function"]["name"].is_string())
        bad("tools[" + std::to_string(i) + "]",
            "Each tool must be {\"type\": \"function\", \"function\": {\"name\": ...}}.");
    }
    if (!t.empty()) r.tools = oj.at("tools");
  }
  if (present(j, "tool_choice")) {
    // "none" | "auto" | "required" | {"type": "function", "function": {"name": N}}, as OpenAI.
    const json& c = j.at("tool_choice");
    auto tool_named = [&](const std::string& name) {
      for (const auto& t : r.tools)
        if (t["function"]["name"] == name) return true;
      return false;
    };
    if (c.is_string()) {
      std::string v = c.get<std::string>();
      if (v != "none" && v != "auto" && v != "required")
        bad("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or a function object; got '" + v + "'.");
      if (v == "required" && r.tools.is_null())
        bad("tool_choice", "'tool_choice' is 'required' but no 'tools' were given.");
      r.tool_choice_none = v == "none";
      r.tool_choice_required = v == "required";
    } else if (c.is_object()) {
      if (!c.contains("function") || !c["function"].is_object() || !c["function"].contains("name") ||
          !c["function"]["name"].is_string())
        bad("tool_choice", "'tool_choice' object must be {\"type\": \"function\", \"function\": {\"name\": ...}}.");
      std::string name = c["function"]["name"].get<std::string>();
      if (!tool_named(name))
        bad("tool_choice", "'tool_choice' names function '" + name + "', which is not in 'tools'.");
      r.tool_choice_function = name;
    } else {
      bad("tool_choice", "'tool_choice' must be a string or an object.");
    }
  }
  if (present(j, "chat_template_kwargs")) {
    if (!j.at("chat_template_kwargs").is_object())
      bad("chat_template_kwargs", "'chat_template_kwargs' must be an object.");
    r.template_kwargs = oj.at("chat_template_kwargs");
  }
  return r;
}

CompletionRequest parse_completion_request(const std::string& body) {
  json j = parse_body(body);
  CompletionRequest r;
  if (!j.contains("prompt")) bad("prompt", "Missing required parameter: 'prompt'.");
  const json& p = j.at("prompt");
  auto as_ids = [&](const json& a) {
    for (auto& x : a) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX)
        bad("prompt", "A token-id prompt must be a list of non-negative integers.");
      r.prompt_ids.push_back(static_cast<int32_t>(x.get<int64_t>()));
    }
  };
  if (p.is_string()) {
    r.prompt = p.get<std::string>();
  } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
    r.prompt = p[0].get<std::string>();
  } else if (p.is_array() && p.size() == 1 && p[0].is_array()) {
    as_ids(p[0]);
  } else if (p.is_array() && !p.empty() && p[0].is_number()) {
    as_ids(p);
  } else if (p.is_array() && p.size() > 1) {
    bad("prompt", "Only one prompt per request is supported.");
  } else {
    bad("prompt", "'prompt' must be a string, a list with one string, or a list of token ids.");
  }
  r.gen = parse_common(j);
  r.gen.response_format = parse_response_format(nlohmann::ordered_json::parse(body, nullptr, false));
  if (present(j, "logprobs")) {
    const json& v = j.at("logprobs");
    if (v.is_boolean()) {
      r.gen.sampling.logprobs = v.get<bool>();
    } else {
      int64_t n = integer(j, "logprobs", 0, 20);
      r.gen.sampling.logprobs = true;
      r.gen.sampling.top_logprobs = static_cast<int32_t>(n);
    }
  }
  if (present(j, "echo")) r.echo = boolean(j, "echo");
  if (!r.gen.max_tokens && !present(j, "max_tokens")) r.gen.max_tokens = 16;  // OpenAI's default
  return r;
}

}  // namespace meshlm::server
