#include "server/structured_output.h"

#include "core/error.h"
#include "grammar/json_schema.h"
#include "server/api_error.h"

namespace meshlm::server {

using ojson = nlohmann::ordered_json;

void GrammarConstraint::accept(int32_t token) {
  if (!matcher_.accept(token))
    throw Error("grammar", "token " + std::to_string(token) +
                               " was sampled but the structured output does not allow it");
}

StructuredOutputs::StructuredOutputs(const tok::Tokenizer& tokenizer, size_t n_ids,
                                     std::vector<int32_t> eos)
    : tokenizer_(tokenizer), n_ids_(n_ids), eos_(std::move(eos)) {}

std::shared_ptr<const grammar::Vocabulary> StructuredOutputs::vocabulary() {
  std::lock_guard lock(mutex_);
  if (!vocab_) {
    const size_t n = std::min(tokenizer_.vocab_size(), n_ids_);
    std::vector<std::string> bytes(n);
    for (size_t i = 0; i < n; ++i)
      if (!tokenizer_.is_special(static_cast<int32_t>(i)))
        bytes[i] = tokenizer_.token_bytes(static_cast<int32_t>(i));
    vocab_ = std::make_shared<grammar::Vocabulary>(std::move(bytes), eos_, n_ids_);
  }
  return vocab_;
}

std::shared_ptr<grammar::Automaton> StructuredOutputs::cached(
    const std::string& key, const std::function<grammar::Grammar()>& build,
    const std::string& param) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = by_key_.find(key); it != by_key_.end()) {
      auto& a = it->second->second;
      if (a->state_count() <= kMaxSharedStates && a->mask_count() <= kMaxSharedMasks) {
        lru_.splice(lru_.begin(), lru_, it->second);
        return a;
      }
      // Grown too big to keep sharing (json_object's nesting makes new states without end):
      // new requests start a fresh automaton; running ones keep the old one until they end.
      lru_.erase(it->second);
      by_key_.erase(it);
    }
  }
  std::shared_ptr<grammar::Automaton> a;
  try {
    a = std::make_shared<grammar::Automaton>(build());
    a->start();
  } catch (const Error& e) {
    throw ApiError(400, "Invalid '" + param + "': " + e.message(), param);
  }
  std::lock_guard lock(mutex_);
  if (auto it = by_key_.find(key); it != by_key_.end()) return it->second->second;
  lru_.emplace_front(key, a);
  by_key_[key] = lru_.begin();
  while (lru_.size() > kCacheSize) {
    by_key_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return a;
}

std::shared_ptr<runtime::TokenConstraint> StructuredOutputs::constraint(
    std::shared_ptr<grammar::Automaton> a) {
  return std::make_shared<GrammarConstraint>(grammar::Matcher(std::move(a), vocabulary()));
}

std::shared_ptr<runtime::TokenConstraint> StructuredOutputs::for_response_format(
    const ResponseFormat& format) {
  switch (format.kind) {
    case ResponseFormat::Kind::Text:
      return nullptr;
    case ResponseFormat::Kind::JsonObject:
      return constraint(cached("json_object", grammar::json_object_grammar, "response_format"));
    case ResponseFormat::Kind::JsonSchema:
      break;
  }
  const ojson& schema = format.schema;
  return constraint(cached(
      "json_schema:" + schema.dump(), [&] { return grammar::json_schema_grammar(schema); },
      "response_format.json_schema.schema"));
}

std::shared_ptr<runtime::TokenConstraint> StructuredOutputs::for_tool_call(
    const ojson& tools, const std::string& name, ToolSyntax syntax) {
  if (syntax == ToolSyntax::None) return nullptr;
  std::vector<size_t> chosen;
  for (size_t i = 0; i < tools.size(); ++i)
    if (name.empty() || tools[i]["function"]["name"] == name) chosen.push_back(i);
  if (chosen.empty()) return nullptr;
  std::string key = std::string("tools:") + (syntax == ToolSyntax::Hermes ? "hermes" : "llama");
  for (size_t i : chosen) key += "\n" + tools[i]["function"].dump();
  std::string param = "tools";
  auto build = [&] {
    grammar::GrammarBuilder b;
    grammar::JsonGrammar j(b);
    std::vector<grammar::Seq> calls;
    for (size_t i : chosen) {
      const ojson& f = tools[i]["function"];
      param = "tools[" + std::to_string(i) + "].function.parameters";
      const bool has_params = f.contains("parameters") && !f["parameters"].is_null();
      const int32_t args = has_params ? j.schema(f["parameters"]) : j.any_object();
      // {"name": "f", "arguments": {...}} as the templates show it (Llama: "parameters").
      grammar::Seq call = b.literal("{\"name\": ");
      grammar::Seq fname = j.string_literal(f["name"].get<std::string>());
      call.insert(call.end(), fname.begin(), fname.end());
      grammar::Seq mid = b.literal(syntax == ToolSyntax::Hermes ? ", \"arguments\": "
                                                                : ", \"parameters\": ");
      call.insert(call.end(), mid.begin(), mid.end());
      call.push_back(args);
      call.push_back(b.byte('}'));
      calls.push_back(std::move(call));
    }
    const int32_t any_call = b.rule("call", std::move(calls));
    grammar::Seq root;
    if (syntax == ToolSyntax::Hermes) {
      root = b.literal("<tool_call>\n");
      root.push_back(any_call);
      grammar::Seq close = b.literal("\n</tool_call>");
      root.insert(root.end(), close.begin(), close.end());
    } else {
      root = {any_call};
    }
    return b.build(b.rule("root", {root}));
  };
  return constraint(cached(key, build, param));
}

}  // namespace meshlm::server
