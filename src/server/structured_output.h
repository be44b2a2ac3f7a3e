// Structured outputs for the OpenAI API: response_format json_object / json_schema, and tool
// calls forced by tool_choice ("required" or a named function), turned into a grammar
// (grammar/) whose per-step token masks constrain the request's sampling (runtime::Engine asks
// the constraint for each step's mask; the last pipeline stage applies it).
//
// The token table (bytes of every vocabulary entry, special tokens left out, EOS allowed only once
// the grammar is complete) is built once per server; compiled grammars are kept in a small LRU by
// schema, so requests with the same schema share one automaton and its cached masks.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "grammar/grammar.h"
#include "runtime/engine.h"
#include "server/openai_request.h"
#include "server/output_parser.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::server {

// The grammar's view of one request, for the engine.
class GrammarConstraint : public runtime::TokenConstraint {
 public:
  explicit GrammarConstraint(grammar::Matcher matcher) : matcher_(std::move(matcher)) {}
  std::shared_ptr<const runtime::TokenMask> next_mask() override { return matcher_.mask(); }
  void accept(int32_t token) override;

 private:
  grammar::Matcher matcher_;
};

class StructuredOutputs {
 public:
  // n_ids: the model's vocabulary size (mask width); eos: the ids that end a completion.
  StructuredOutputs(const tok::Tokenizer& tokenizer, size_t n_ids, std::vector<int32_t> eos);

  // The constraint for a response_format (null for text). Throws ApiError(400) naming the
  // unsupported keyword.
  std::shared_ptr<runtime::TokenConstraint> for_response_format(const ResponseFormat& format);
  // The constraint that makes the reply one call of the named tool (or, with an empty name, of
  // any tool in `tools`) in the model's tool-call syntax, its arguments valid under the tool's
  // parameters schema. Throws ApiError(400).
  std::shared_ptr<runtime::TokenConstraint> for_tool_call(const nlohmann::ordered_json& tools,
                                                          const std::string& name,
                                                          ToolSyntax syntax);

  std::shared_ptr<const grammar::Vocabulary> vocabulary();

 private:
  std::shared_ptr<grammar::Automaton> cached(const std::string& key,
                                             const std::function<grammar::Grammar()>& build,
                                             const std::string& param);
  std::shared_ptr<runtime::TokenConstraint> constraint(std::shared_ptr<grammar::Automaton> a);

  const tok::Tokenizer& tokenizer_;
  size_t n_ids_;
  std::vector<int32_t> eos_;
  std::mutex mutex_;
  std::shared_ptr<const grammar::Vocabulary> vocab_;
  // LRU of compiled grammars by key.
  std::list<std::pair<std::string, std::shared_ptr<grammar::Automaton>>> lru_;
  std::unordered_map<std::string, decltype(lru_)::iterator> by_key_;
  // Bounds on what the cache holds: 16 grammars, each shared while it has at most 20k states
  // (<= 20 MiB of transitions) and 512 cached masks (<= 10 MiB with a 152k vocabulary).
  static constexpr size_t kCacheSize = 16;
  static constexpr size_t kMaxSharedStates = 20000;
  static constexpr size_t kMaxSharedMasks = 512;
};

}  // namespace meshlm::server
