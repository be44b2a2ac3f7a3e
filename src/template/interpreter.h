// Evaluates a parsed template the way @huggingface/jinja's Interpreter does: its scoping rules
// (a for loop has one scope for all iterations; macros see their caller's variables), its
// operator semantics (JavaScript loose `==`, `%`, string concatenation) and its error cases.
// Runtime errors become Error("template", "error at line L, column C: ..."); raise_exception()
// becomes Error("template", <its message>).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "template/ast.h"
#include "template/value.h"

namespace meshlm::tmpl {

inline constexpr uint64_t kMaxSteps = 50'000'000;
inline constexpr int kMaxCallDepth = 64;

class Interpreter {
 public:
  Interpreter(std::string_view source, Heap& heap) : source_(source), heap_(heap) {}

  // Renders the program in `global` (which already holds the globals and the variables).
  std::string run(const NodeList& program, Env* global);

 private:
  struct Arguments {
    std::vector<Value> positional;
    std::vector<std::pair<std::string, Value>> keywords;
  };

  Value eval(const Node& n, Env* env);
  // eval() that refuses a bare JavaScript undefined (a TypeError in @huggingface/jinja).
  Value eval_value(const Node& n, Env* env);
  Value dispatch(const Node& n, Env* env);
  std::string eval_block(const NodeList& body, Env* env);

  Value eval_binary(const Node& n, Env* env);
  Value eval_unary(const Node& n, Env* env);
  Value eval_member(const Node& n, Env* env);
  Value eval_slice(const Value& object, const Node& slice, Env* env);
  Value eval_call(const Node& n, Env* env);
  Value eval_object_literal(const Node& n, Env* env);
  Value eval_set(const Node& n, Env* env);
  Value eval_for(const Node& n, Env* env);
  Value eval_macro(const Node& n, Env* env);
  Value eval_call_statement(const Node& n, Env* env);
  Arguments eval_arguments(const NodeList& args, Env* env);
  Value kwargs_value(std::vector<std::pair<std::string, Value>> keywords);
  Value call_function(const Value& fn, std::vector<Value>& args, Env* scope);
  void bind_macro_arguments(const std::string& display_name, const NodeList& params,
                            const std::set<std::string>& specials, std::vector<Value> args,
                            Env* scope);

  // filters.cpp
  Value apply_filter(const Value& operand, const Node& filter, Env* env);
  Value apply_named_filter(const Value& operand, const std::string& name);
  Value apply_call_filter(const Value& operand, const Node& call, Env* env);

  std::string_view source_;
  Heap& heap_;
  uint64_t steps_ = 0;
  int call_depth_ = 0;
};

// The names `kwargs` / `varargs` that a macro body reads before declaring them.
std::set<std::string> special_macro_arguments(const NodeList& params, const NodeList& body);

}  // namespace meshlm::tmpl
