#include "template/interpreter.h"

#include <cmath>

#include "core/error.h"
#include "core/utf8.h"
#include "template/builtins.h"
#include "template/js_string.h"
#include "template/lexer.h"

namespace meshlm::tmpl {
namespace {

struct BreakSignal {};
struct ContinueSignal {};

const char* kHoleError = "TypeError: Cannot read properties of undefined";

void append_checked(std::string& out, std::string_view piece) {
  if (out.size() + piece.size() > kMaxStringBytes)
    throw Failure{"output exceeds the template size limit"};
  out.append(piece);
}

bool numeric_like(const Value& v) { return v.is_numeric() || v.is(Kind::kBool); }
double numeric_of(const Value& v) { return v.is(Kind::kBool) ? (v.boolean ? 1 : 0) : v.number; }

}  // namespace

std::string Interpreter::run(const NodeList& program, Env* global) {
  try {
    return eval_block(program, global);
  } catch (const BreakSignal&) {
    throw Error("template", "'break' outside of a loop");
  } catch (const ContinueSignal&) {
    throw Error("template", "'continue' outside of a loop");
  }
}

Value Interpreter::eval(const Node& n, Env* env) {
  if (++steps_ > kMaxSteps) throw Failure{"template evaluation exceeded its step budget"};
  try {
    return dispatch(n, env);
  } catch (const Failure& f) {
    throw Error("template", "error at " + describe_position(source_, n.pos) + ": " + f.message);
  }
}

Value Interpreter::eval_value(const Node& n, Env* env) {
  Value v = eval(n, env);
  if (v.is(Kind::kHole)) {
    throw Error("template", "error at " + describe_position(source_, n.pos) + ": " + kHoleError);
  }
  return v;
}

std::string Interpreter::eval_block(const NodeList& body, Env* env) {
  std::string out;
  for (const NodePtr& stmt : body) {
    if (stmt->type == NodeType::kText) {
      append_checked(out, stmt->text);
      continue;
    }
    Value v = eval(*stmt, env);
    if (v.is(Kind::kNull) || v.is(Kind::kUndefined)) continue;
    if (v.is(Kind::kString)) {
      append_checked(out, v.s());
      continue;
    }
    try {
      append_checked(out, to_output(v));
    } catch (const Failure& f) {
      throw Error("template", "error at " + describe_position(source_, stmt->pos) + ": " + f.message);
    }
  }
  return out;
}

Value Interpreter::dispatch(const Node& n, Env* env) {
  switch (n.type) {
    case NodeType::kText:
    case NodeType::kStringLiteral: return Value::string(n.text);
    case NodeType::kComment: return Value::null();
    case NodeType::kIf: {
      Value test = eval_value(*n.a, env);
      return Value::string(eval_block(truthy(test) ? n.body : n.alt, env));
    }
    case NodeType::kFor: return eval_for(n, env);
    case NodeType::kBreak: throw BreakSignal{};
    case NodeType::kContinue: throw ContinueSignal{};
    case NodeType::kSet: return eval_set(n, env);
    case NodeType::kMacro: return eval_macro(n, env);
    case NodeType::kCallStatement: return eval_call_statement(n, env);
    case NodeType::kFilterStatement:
      return apply_filter(Value::string(eval_block(n.body, env)), *n.a, env);
    case NodeType::kIntegerLiteral: return Value::integer(n.number);
    case NodeType::kFloatLiteral: return Value::floating(n.number);
    case NodeType::kArrayLiteral:
    case NodeType::kTupleLiteral: {
      std::vector<Value> items;
      items.reserve(n.list.size());
      for (const NodePtr& e : n.list) items.push_back(eval(*e, env));
      return Value::of_array(heap_.new_array(std::move(items)), n.type == NodeType::kTupleLiteral);
    }
    case NodeType::kObjectLiteral: return eval_object_literal(n, env);
    case NodeType::kIdentifier: return env->lookup(n.text);
    case NodeType::kCall: return eval_call(n, env);
    case NodeType::kMember: return eval_member(n, env);
    case NodeType::kUnary: return eval_unary(n, env);
    case NodeType::kBinary: return eval_binary(n, env);
    case NodeType::kFilter: return apply_filter(eval(*n.a, env), *n.b, env);
    case NodeType::kTest: {
      Value operand = eval(*n.a, env);
      if (!has_test(n.text)) throw Failure{"Unknown test: " + n.text};
      bool result = run_test(n.text, operand, nullptr);
      return Value::from_bool(n.flag ? !result : result);
    }
    case NodeType::kSelect: {
      Value predicate = eval_value(*n.b, env);
      return truthy(predicate) ? eval(*n.a, env) : Value::undefined();
    }
    case NodeType::kTernary: {
      Value cond = eval_value(*n.a, env);
      return truthy(cond) ? eval(*n.b, env) : eval(*n.c, env);
    }
    default: break;
  }
  throw Failure{"Unknown node type"};
}

Value Interpreter::eval_object_literal(const Node& n, Env* env) {
  Object* o = heap_.new_object();
  heap_.charge(n.pairs.size());
  for (const auto& [key_node, value_node] : n.pairs) {
    Value key = eval_value(*key_node, env);
    if (!key.is(Kind::kString))
      throw Failure{std::string("Object keys must be strings: got ") + type_name(key)};
    Value value = eval(*value_node, env);
    o->set(key.s(), value.is(Kind::kHole) ? Value::undefined() : value);
  }
  return Value::of_object(o);
}

Value Interpreter::eval_binary(const Node& n, Env* env) {
  const std::string& op = n.text;
  Value left = eval_value(*n.a, env);
  if (op == "and") return truthy(left) ? eval(*n.b, env) : left;
  if (op == "or") return truthy(left) ? left : eval(*n.b, env);
  Value right = eval_value(*n.b, env);
  if (op == "==") return Value::from_bool(loose_equals(left, right));
  if (op == "!=") return Value::from_bool(!loose_equals(left, right));

  if (left.is(Kind::kUndefined) || right.is(Kind::kUndefined)) {
    if (right.is(Kind::kUndefined) && (op == "in" || op == "not in"))
      return Value::from_bool(op == "not in");
    throw Failure{"Cannot perform operation " + op + " on undefined values"};
  }
  if (left.is(Kind::kNull) || right.is(Kind::kNull))
    throw Failure{"Cannot perform operation on null values"};
  if (op == "~") return Value::string(raw_to_string(left) + raw_to_string(right));
  if (op == "**" && numeric_like(left) && numeric_like(right)) {
    double a = numeric_of(left), b = numeric_of(right);
    if (a == 0 && b < 0) throw Failure{"0.0 cannot be raised to a negative power"};
    double result = std::pow(a, b);
    if (std::isnan(a) || std::isnan(b) || (std::isinf(b) && std::fabs(a) == 1)) result = NAN;
    if (!std::isfinite(result)) throw Failure{"Exponentiation result is not a finite real number"};
    bool is_float = left.is(Kind::kFloat) || right.is(Kind::kFloat) || b < 0;
    return is_float ? Value::floating(result) : Value::integer(result);
  }
  if (left.is_numeric() && right.is_numeric()) {
    double a = left.number, b = right.number;
    bool is_float = left.is(Kind::kFloat) || right.is(Kind::kFloat);
    auto number = [&](double r) { return is_float ? Value::floating(r) : Value::integer(r); };
    if (op == "+") return number(a + b);
    if (op == "-") return number(a - b);
    if (op == "*") return number(a * b);
    if (op == "/") return Value::floating(a / b);
    if (op == "//") return number(std::floor(a / b));
    if (op == "%") return number(std::fmod(a, b));
    if (op == "<") return Value::from_bool(a < b);
    if (op == ">") return Value::from_bool(a > b);
    if (op == ">=") return Value::from_bool(a >= b);
    if (op == "<=") return Value::from_bool(a <= b);
  } else if (left.is_array() && right.is_array()) {
    if (op == "+") {
      std::vector<Value> items = left.array->items;
      items.insert(items.end(), right.array->items.begin(), right.array->items.end());
      return Value::of_array(heap_.new_array(std::move(items)));
    }
  } else if (right.is_array()) {
    if (op == "in" || op == "not in") {
      bool member = false;
      for (const Value& x : right.array->items)
        if (!x.is(Kind::kHole) && strict_equals(x, left)) member = true;
      return Value::from_bool(op == "in" ? member : !member);
    }
  }
  if ((left.is(Kind::kString) || right.is(Kind::kString)) && op == "+")
    return Value::string(raw_to_string(left) + raw_to_string(right));
  if (left.is(Kind::kString) && right.is(Kind::kString) && (op == "in" || op == "not in")) {
    bool found = right.s().find(left.s()) != std::string::npos;
    return Value::from_bool(op == "in" ? found : !found);
  }
  if (left.is(Kind::kString) && right.is(Kind::kObject) && (op == "in" || op == "not in")) {
    bool found = right.object->find(left.s()) != nullptr;
    return Value::from_bool(op == "in" ? found : !found);
  }
  throw Failure{"Unknown operator \"" + op + "\" between " + type_name(left) + " and " +
                type_name(right)};
}

Value Interpreter::eval_unary(const Node& n, Env* env) {
  Value arg = eval_value(*n.a, env);
  if (n.text == "not") return Value::from_bool(!truthy(arg));
  double sign = n.text == "-" ? -1 : 1;
  if (arg.is_numeric() || arg.is(Kind::kBool)) {
    double r = sign * numeric_of(arg);
    return arg.is(Kind::kFloat) ? Value::floating(r) : Value::integer(r);
  }
  throw Failure{"Unknown operator \"" + n.text + "\" for " + type_name(arg)};
}

Value Interpreter::eval_member(const Node& n, Env* env) {
  Value object = eval_value(*n.a, env);
  Value property;
  if (n.flag) {
    if (n.b->type == NodeType::kSlice) return eval_slice(object, *n.b, env);
    property = eval_value(*n.b, env);
  } else if (n.b->type == NodeType::kIntegerLiteral) {
    property = Value::integer(n.b->number);
  } else {
    property = Value::string(n.b->text);
  }

  if (object.is_attribute_container()) {
    if (!property.is(Kind::kString))
      throw Failure{std::string("Cannot access property with non-string: got ") + type_name(property)};
    if (const Value* v = object.object->find(property.s())) return *v;
    if (object.is(Kind::kObject)) return object_member(heap_, object, property.s());
    return Value::undefined();
  }
  if (object.is_array() || object.is(Kind::kString)) {
    if (property.is(Kind::kInt)) {
      double index = std::trunc(property.number);
      if (object.is(Kind::kString)) {
        std::u16string units = js::to_utf16(object.s());
        double len = static_cast<double>(units.size());
        if (index < 0) index += len;
        if (!(index >= 0 && index < len)) return Value::undefined();
        return Value::string(js::from_utf16(units.substr(static_cast<size_t>(index), 1)));
      }
      double len = static_cast<double>(object.array->items.size());
      if (index < 0) index += len;
      if (!(index >= 0 && index < len)) return Value::undefined();
      Value v = object.array->items[static_cast<size_t>(index)];
      return v.is(Kind::kHole) ? Value::undefined() : v;
    }
    if (property.is(Kind::kString)) {
      if (object.is(Kind::kString)) return string_member(heap_, object, property.s());
      if (property.s() == "length")
        return Value::integer(static_cast<double>(object.array->items.size()));
      return Value::undefined();
    }
    throw Failure{std::string("Cannot access property with non-string/non-number: got ") +
                  type_name(property)};
  }
  if (!property.is(Kind::kString))
    throw Failure{std::string("Cannot access property with non-string: got ") + type_name(property)};
  return Value::undefined();
}

Value Interpreter::eval_slice(const Value& object, const Node& slice, Env* env) {
  if (!object.is_array() && !object.is(Kind::kString))
    throw Failure{"Slice object must be an array or string"};
  Value parts[3];
  const char* names[3] = {"start", "stop", "step"};
  const Node* nodes[3] = {slice.a.get(), slice.b.get(), slice.c.get()};
  for (int i = 0; i < 3; ++i) {
    parts[i] = nodes[i] ? eval_value(*nodes[i], env) : Value::undefined();
    if (!parts[i].is(Kind::kInt) && !parts[i].is(Kind::kUndefined))
      throw Failure{std::string("Slice ") + names[i] + " must be numeric or undefined"};
  }
  if (object.is_array()) {
    std::vector<Value> items;
    for (size_t i : slice_indices(object.array->items.size(), parts[0], parts[1], parts[2]))
      items.push_back(object.array->items[i]);
    return Value::of_array(heap_.new_array(std::move(items)));
  }
  std::vector<char32_t> cps = js::code_points(object.s());
  std::string out;
  for (size_t i : slice_indices(cps.size(), parts[0], parts[1], parts[2])) utf8_append(out, cps[i]);
  return Value::string(std::move(out));
}

Interpreter::Arguments Interpreter::eval_arguments(const NodeList& args, Env* env) {
  Arguments out;
  for (const NodePtr& arg : args) {
    if (arg->type == NodeType::kSpread) {
      Value v = eval_value(*arg->a, env);
      if (!v.is_array()) throw Failure{std::string("Cannot unpack non-iterable type: ") + type_name(v)};
      for (const Value& item : v.array->items) out.positional.push_back(item);
    } else if (arg->type != NodeType::kKeywordArgument && arg->type != NodeType::kKeywordSpread) {
      out.positional.push_back(eval_value(*arg, env));
    }
  }
  auto add = [&](const std::string& key, Value value) {
    for (const auto& [k, v] : out.keywords)
      if (k == key) throw Failure{"Got multiple values for keyword argument '" + key + "'"};
    out.keywords.emplace_back(key, std::move(value));
  };
  for (const NodePtr& arg : args) {
    if (arg->type == NodeType::kKeywordArgument) {
      add(arg->a->text, eval_value(*arg->b, env));
    } else if (arg->type == NodeType::kKeywordSpread) {
      Value v = eval_value(*arg->a, env);
      if (!v.is(Kind::kObject))
        throw Failure{std::string("Argument after ** must be a mapping, not ") + type_name(v)};
      for (const auto& [k, item] : v.object->entries) add(k, item);
    }
  }
  return out;
}

Value Interpreter::kwargs_value(std::vector<std::pair<std::string, Value>> keywords) {
  Object* o = heap_.new_object(true);
  heap_.charge(keywords.size());
  o->entries = std::move(keywords);
  return Value::of_object(o);
}

Value Interpreter::call_function(const Value& fn, std::vector<Value>& args, Env* scope) {
  if (!fn.is(Kind::kFunction))
    throw Failure{std::string("Cannot call something that is not a function: got ") + type_name(fn)};
  if (call_depth_ >= kMaxCallDepth) throw Failure{"macro calls are nested too deeply"};
  ++call_depth_;
  struct Leave {
    int& depth;
    ~Leave() { --depth; }
  } leave{call_depth_};
  return fn.function->call(args, scope);
}

Value Interpreter::eval_call(const Node& n, Env* env) {
  Arguments a = eval_arguments(n.list, env);
  if (!a.keywords.empty()) a.positional.push_back(kwargs_value(std::move(a.keywords)));
  Value fn = eval_value(*n.a, env);
  return call_function(fn, a.positional, env);
}

Value Interpreter::eval_set(const Node& n, Env* env) {
  Value rhs = n.b ? eval(*n.b, env) : Value::string(eval_block(n.body, env));
  const Node& target = *n.a;
  if (target.type == NodeType::kIdentifier) {
    env->set(target.text, rhs);
  } else if (target.type == NodeType::kTupleLiteral) {
    if (!rhs.is_array())
      throw Failure{std::string("Cannot unpack non-iterable type in set: ") + type_name(rhs)};
    const auto& items = rhs.array->items;
    if (items.size() != target.list.size())
      throw Failure{std::string("Too ") + (target.list.size() > items.size() ? "few" : "many") +
                    " items to unpack in set"};
    for (size_t i = 0; i < items.size(); ++i) {
      if (target.list[i]->type != NodeType::kIdentifier)
        throw Failure{"Cannot unpack to non-identifier in set"};
      env->set(target.list[i]->text, items[i]);
    }
  } else if (target.type == NodeType::kMember) {
    Value object = eval_value(*target.a, env);
    if (!object.is(Kind::kNamespace)) throw Failure{"cannot assign attribute on non-namespace object"};
    if (target.b->type != NodeType::kIdentifier)
      throw Failure{"Cannot assign to member with non-identifier property"};
    object.object->set(target.b->text, rhs.is(Kind::kHole) ? Value::undefined() : rhs);
  } else {
    throw Failure{"Invalid LHS inside assignment expression"};
  }
  return Value::null();
}

Value Interpreter::eval_for(const Node& n, Env* env) {
  Env* scope = heap_.new_env(env);
  const Node* test = nullptr;
  Value iterable;
  if (n.b->type == NodeType::kSelect) {
    iterable = eval_value(*n.b->a, scope);
    test = n.b->b.get();
  } else {
    iterable = eval_value(*n.b, scope);
  }
  if (!iterable.is_array() && !iterable.is(Kind::kObject))
    throw Failure{std::string("Expected iterable or object type in for loop: got ") + type_name(iterable)};
  std::vector<Value> source;
  if (iterable.is(Kind::kObject)) {
    for (const auto& [k, v] : iterable.object->entries) source.push_back(Value::string(k));
  } else {
    source = iterable.array->items;
  }
  const Node& loopvar = *n.a;
  auto assign = [&](Env* target, const Value& current) {
    if (loopvar.type == NodeType::kIdentifier) {
      target->set(loopvar.text, current);
      return;
    }
    for (size_t j = 0; j < loopvar.list.size(); ++j) {
      if (loopvar.list[j]->type != NodeType::kIdentifier)
        throw Failure{"Cannot unpack non-identifier type"};
      target->set(loopvar.list[j]->text, current.array->items[j]);
    }
  };
  std::vector<Value> items;
  for (const Value& current : source) {
    if (loopvar.type == NodeType::kTupleLiteral) {
      if (!current.is(Kind::kArray))
        throw Failure{std::string("Cannot unpack non-iterable type: ") + type_name(current)};
      size_t want = loopvar.list.size(), have = current.array->items.size();
      if (want != have)
        throw Failure{std::string("Too ") + (want > have ? "few" : "many") + " items to unpack"};
    }
    if (test) {
      Env* loop_scope = heap_.new_env(scope);
      assign(loop_scope, current);
      if (!truthy(eval_value(*test, loop_scope))) continue;
    }
    items.push_back(current);
  }

  std::string result;
  bool no_iteration = true;
  double count = static_cast<double>(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    Object* loop = heap_.new_object();
    heap_.charge(9);
    double d = static_cast<double>(i);
    loop->entries = {
        {"index", Value::integer(d + 1)},
        {"index0", Value::integer(d)},
        {"revindex", Value::integer(count - d)},
        {"revindex0", Value::integer(count - d - 1)},
        {"first", Value::from_bool(i == 0)},
        {"last", Value::from_bool(i + 1 == items.size())},
        {"length", Value::integer(count)},
        {"previtem", i > 0 ? items[i - 1] : Value::undefined()},
        {"nextitem", i + 1 < items.size() ? items[i + 1] : Value::undefined()},
    };
    scope->set("loop", Value::of_object(loop));
    assign(scope, items[i]);
    try {
      append_checked(result, eval_block(n.body, scope));
    } catch (const ContinueSignal&) {
      continue;
    } catch (const BreakSignal&) {
      break;
    }
    no_iteration = false;
  }
  if (no_iteration) append_checked(result, eval_block(n.alt, scope));
  return Value::string(std::move(result));
}

void Interpreter::bind_macro_arguments(const std::string& display_name, const NodeList& params,
                                       const std::set<std::string>& specials,
                                       std::vector<Value> args, Env* scope) {
  std::vector<std::pair<std::string, Value>> keywords;
  if (!args.empty() && args.back().is_kwargs()) {
    keywords = args.back().object->entries;
    args.pop_back();
  }
  std::vector<std::pair<std::string, const Node*>> pending;
  for (size_t i = 0; i < params.size(); ++i) {
    const Node& p = *params[i];
    const std::string& name = p.type == NodeType::kIdentifier ? p.text : p.a->text;
    const Node* default_value = p.type == NodeType::kKeywordArgument ? p.b.get() : nullptr;
    bool given = i < args.size();
    Value value = given ? args[i] : Value::undefined();
    if (!given) {
      for (auto it = keywords.begin(); it != keywords.end(); ++it) {
        if (it->first == name) {
          value = it->second;
          given = true;
          keywords.erase(it);
          break;
        }
      }
    }
    if (!given && default_value) pending.emplace_back(name, default_value);
    scope->set(name, value);
  }
  if (specials.count("kwargs")) {
    Object* o = heap_.new_object();
    heap_.charge(keywords.size());
    o->entries = keywords;
    scope->set("kwargs", Value::of_object(o));
  } else if (!keywords.empty()) {
    throw Failure{"macro " + display_name + " takes no keyword argument '" + keywords[0].first + "'"};
  }
  if (specials.count("varargs")) {
    std::vector<Value> rest;
    for (size_t i = params.size(); i < args.size(); ++i) rest.push_back(args[i]);
    scope->set("varargs", Value::of_array(heap_.new_array(std::move(rest))));
  } else if (args.size() > params.size()) {
    throw Failure{"macro " + display_name + " takes not more than " + std::to_string(params.size()) +
                  " argument(s)"};
  }
  for (const auto& [name, node] : pending) scope->set(name, eval(*node, scope));
}

Value Interpreter::eval_macro(const Node& n, Env* env) {
  std::set<std::string> specials = special_macro_arguments(n.list, n.body);
  const Node* node = &n;
  env->set(n.a->text, Value::of_function(heap_.new_function(
                          [this, node, specials](std::vector<Value>& args, Env* caller_scope) {
                            Env* scope = heap_.new_env(caller_scope);
                            bind_macro_arguments("'" + node->a->text + "'", node->list, specials,
                                                 args, scope);
                            return Value::string(eval_block(node->body, scope));
                          })));
  return Value::null();
}

Value Interpreter::eval_call_statement(const Node& n, Env* env) {
  std::set<std::string> specials = special_macro_arguments(n.list, n.body);
  const Node* node = &n;
  Value caller = Value::of_function(heap_.new_function(
      [this, node, specials, env](std::vector<Value>& args, Env*) {
        Env* scope = heap_.new_env(env);
        bind_macro_arguments("None", node->list, specials, args, scope);
        return Value::string(eval_block(node->body, scope));
      }));
  const Node& call = *n.a;
  Arguments a = eval_arguments(call.list, env);
  a.positional.push_back(kwargs_value(std::move(a.keywords)));
  Value fn = eval_value(*call.a, env);
  if (!fn.is(Kind::kFunction))
    throw Failure{std::string("Cannot call something that is not a function: got ") + type_name(fn)};
  Env* scope = heap_.new_env(env);
  scope->set("caller", caller);
  return call_function(fn, a.positional, scope);
}

namespace {

class SpecialArgumentScan {
 public:
  std::set<std::string> declared, accessed;

  void declare(const std::string& name) {
    if (name == "kwargs" || name == "varargs") declared.insert(name);
  }
  void declare_target(const Node* n) {
    if (!n) return;
    if (n->type == NodeType::kIdentifier) declare(n->text);
    if (n->type == NodeType::kTupleLiteral)
      for (const auto& k : n->list) declare_target(k.get());
  }
  static const std::string& param_name(const Node& p) {
    return p.type == NodeType::kIdentifier ? p.text : p.a->text;
  }
  void declare_params(const NodeList& params) {
    for (const auto& p : params) declare(param_name(*p));
  }
  void visit_defaults(const NodeList& params) {
    for (const auto& p : params)
      if (p->type == NodeType::kKeywordArgument) visit(p->b.get());
  }
  void visit(const NodeList& list) {
    for (const auto& k : list) visit(k.get());
  }
  void visit(const Node* n) {
    if (!n) return;
    switch (n->type) {
      case NodeType::kFor:
        declare_target(n->a.get());
        if (n->b->type == NodeType::kSelect) {
          visit(n->b->a.get());
          visit(n->body);
          visit(n->alt);
          visit(n->b->b.get());
        } else {
          visit(n->b.get());
          visit(n->body);
          visit(n->alt);
        }
        return;
      case NodeType::kSet:
        declare_target(n->a.get());
        visit(n->b.get());
        visit(n->body);
        return;
      case NodeType::kMacro:
        declare_params(n->list);
        visit_defaults(n->list);
        visit(n->body);
        return;
      case NodeType::kCallStatement:
        visit(n->a.get());
        declare_params(n->list);
        visit_defaults(n->list);
        visit(n->body);
        return;
      case NodeType::kFilterStatement:
        visit(n->body);
        if (n->a->type == NodeType::kCall) visit(n->a->list);
        return;
      case NodeType::kIdentifier:
        if ((n->text == "kwargs" || n->text == "varargs") && !declared.count(n->text))
          accessed.insert(n->text);
        return;
      case NodeType::kMember:
        visit(n->a.get());
        if (n->flag) visit(n->b.get());
        return;
      case NodeType::kFilter:
        visit(n->a.get());
        if (n->b->type == NodeType::kCall) visit(n->b->list);
        return;
      case NodeType::kTest: visit(n->a.get()); return;
      case NodeType::kSelect:
        visit(n->b.get());
        visit(n->a.get());
        return;
      case NodeType::kKeywordArgument: visit(n->b.get()); return;
      default:
        visit(n->a.get());
        visit(n->b.get());
        visit(n->c.get());
        visit(n->list);
        visit(n->body);
        visit(n->alt);
        for (const auto& [k, v] : n->pairs) visit(k.get()), visit(v.get());
    }
  }
};

}  // namespace

std::set<std::string> special_macro_arguments(const NodeList& params, const NodeList& body) {
  SpecialArgumentScan scan;
  scan.declare_params(params);
  scan.visit(body);
  return scan.accessed;
}

}  // namespace meshlm::tmpl
