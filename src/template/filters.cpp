// The `|filter` operator of Interpreter, with @huggingface/jinja's filter set and argument
// conventions (filters it does not know are errors, not no-ops).
#include <cmath>

#include "core/utf8.h"
#include "template/builtins.h"
#include "template/interpreter.h"
#include "template/js_string.h"

namespace meshlm::tmpl {
namespace {

const char* kHoleError = "TypeError: Cannot read properties of undefined";

std::string indent_lines(const std::string& s, const std::string& pad, bool first, bool blank) {
  std::string out;
  size_t start = 0, line = 0;
  while (true) {
    size_t nl = s.find('\n', start);
    std::string_view piece(s.data() + start, (nl == std::string::npos ? s.size() : nl) - start);
    if (line > 0) out += '\n';
    bool skip = (!first && line == 0) || (!blank && piece.empty());
    if (!skip) out += pad;
    out.append(piece);
    if (out.size() > kMaxStringBytes) throw Failure{"string exceeds the template size limit"};
    if (nl == std::string::npos) break;
    start = nl + 1;
    ++line;
  }
  return out;
}

std::string repeat_spaces(double width) {
  if (!(width >= 0) || std::isinf(width)) throw Failure{"RangeError: Invalid count value: " + js::number_to_string(width)};
  if (width > 4096) throw Failure{"indent width is too large"};
  return std::string(static_cast<size_t>(width), ' ');
}

const Value* keyword(const std::vector<std::pair<std::string, Value>>& keywords, const char* name) {
  for (const auto& [k, v] : keywords)
    if (k == name) return &v;
  return nullptr;
}

// args.at(i) ?? kwargs.get(name) ?? fallback
Value pick(const std::vector<Value>& args, size_t i,
           const std::vector<std::pair<std::string, Value>>& keywords, const char* name,
           Value fallback) {
  if (i < args.size()) return args[i];
  if (const Value* v = keyword(keywords, name)) return *v;
  return fallback;
}

}  // namespace

Value Interpreter::apply_filter(const Value& operand, const Node& filter, Env* env) {
  if (filter.type == NodeType::kIdentifier) {
    if (filter.text == "safe") return operand;
    if (operand.is(Kind::kHole)) throw Failure{kHoleError};
    return apply_named_filter(operand, filter.text);
  }
  if (filter.type == NodeType::kCall) {
    if (filter.a->type != NodeType::kIdentifier) throw Failure{"Unknown filter: " + filter.a->text};
    return apply_call_filter(operand, filter, env);
  }
  throw Failure{"Unknown filter"};
}

Value Interpreter::apply_named_filter(const Value& operand, const std::string& name) {
  if (name == "tojson") return Value::string(to_json(operand, JsonOptions{}));
  if (operand.is_array()) {
    const auto& items = operand.array->items;
    if (name == "list") return operand;
    if (name == "first") return items.empty() ? Value::hole() : items.front();
    if (name == "last") return items.empty() ? Value::hole() : items.back();
    if (name == "length") return Value::integer(static_cast<double>(items.size()));
    if (name == "reverse") return Value::of_array(heap_.new_array({items.rbegin(), items.rend()}));
    if (name == "sort") {
      std::vector<Value> sorted = items;
      stable_sort_values(sorted, [](const Value& a, const Value& b) { return compare_values(a, b, false); });
      return Value::of_array(heap_.new_array(std::move(sorted)));
    }
    if (name == "join") {
      std::string out;
      for (const Value& v : items) {
        out += raw_join_piece(v);
        if (out.size() > kMaxStringBytes) throw Failure{"string exceeds the template size limit"};
      }
      return Value::string(std::move(out));
    }
    if (name == "string") return Value::string(to_json(operand, JsonOptions{}, 0, false));
    if (name == "unique") {
      std::vector<Value> out;
      for (const Value& v : items) {
        bool seen = false;
        for (const Value& u : out)
          if (strict_equals(u, v) || (u.is_numeric() && v.is_numeric() && std::isnan(u.number) &&
                                      std::isnan(v.number)))
            seen = true;
        if (!seen) out.push_back(v);
      }
      return Value::of_array(heap_.new_array(std::move(out)));
    }
    throw Failure{"Unknown ArrayValue filter: " + name};
  }
  if (operand.is(Kind::kString)) {
    const std::string& s = operand.s();
    if (name == "length") return Value::integer(static_cast<double>(js::utf16_length(s)));
    if (name == "upper") return Value::string(js::to_upper(s));
    if (name == "lower") return Value::string(js::to_lower(s));
    if (name == "title") return Value::string(js::title_case(s));
    if (name == "capitalize") return Value::string(js::capitalize(s));
    if (name == "trim") return Value::string(js::trim(s));
    if (name == "indent") return Value::string(indent_lines(s, "    ", false, false));
    if (name == "join" || name == "string") return operand;
    if (name == "int") {
      double v = js::parse_int(s);
      return Value::integer(std::isnan(v) ? 0 : v);
    }
    if (name == "float") {
      double v = js::parse_float(s);
      return Value::floating(std::isnan(v) ? 0 : v);
    }
    throw Failure{"Unknown StringValue filter: " + name};
  }
  if (operand.is_numeric()) {
    bool is_int = operand.is(Kind::kInt);
    if (name == "abs")
      return is_int ? Value::integer(std::fabs(operand.number)) : Value::floating(std::fabs(operand.number));
    if (name == "int") return Value::integer(std::floor(operand.number));
    if (name == "float") return Value::floating(operand.number);
    if (name == "string") return Value::string(to_output(operand));
    throw Failure{"Unknown NumericValue filter: " + name};
  }
  if (operand.is(Kind::kObject)) {
    if (name == "items") {
      std::vector<Value> pairs;
      for (const auto& [k, v] : operand.object->entries)
        pairs.push_back(Value::of_array(heap_.new_array({Value::string(k), v})));
      return Value::of_array(heap_.new_array(std::move(pairs)));
    }
    if (name == "length") return Value::integer(static_cast<double>(operand.object->entries.size()));
    Value builtin = object_member(heap_, operand, name);
    if (builtin.is(Kind::kFunction)) {
      std::vector<Value> none;
      return builtin.function->call(none, nullptr);
    }
    throw Failure{"Unknown ObjectValue filter: " + name};
  }
  if (operand.is(Kind::kBool)) {
    bool b = operand.boolean;
    if (name == "bool") return operand;
    if (name == "int") return Value::integer(b ? 1 : 0);
    if (name == "float") return Value::floating(b ? 1 : 0);
    if (name == "string") return Value::string(b ? "true" : "false");
    throw Failure{"Unknown BooleanValue filter: " + name};
  }
  throw Failure{"Cannot apply filter \"" + name + "\" to type: " + type_name(operand)};
}

Value Interpreter::apply_call_filter(const Value& operand, const Node& call, Env* env) {
  const std::string& name = call.a->text;
  auto cannot_apply = [&] {
    return Failure{"Cannot apply filter \"" + name + "\" to type: " + type_name(operand)};
  };
  if (name == "tojson") {
    if (operand.is(Kind::kHole)) throw Failure{kHoleError};
    Arguments a = eval_arguments(call.list, env);
    Value indent = pick({}, 0, a.keywords, "indent", Value::null());
    if (!indent.is(Kind::kInt) && !indent.is(Kind::kNull))
      throw Failure{"If set, indent must be a number"};
    Value ensure_ascii = pick({}, 0, a.keywords, "ensure_ascii", Value::from_bool(false));
    if (!ensure_ascii.is(Kind::kBool)) throw Failure{"If set, ensure_ascii must be a boolean"};
    Value sort_keys = pick({}, 0, a.keywords, "sort_keys", Value::from_bool(false));
    if (!sort_keys.is(Kind::kBool)) throw Failure{"If set, sort_keys must be a boolean"};
    Value separators = pick({}, 0, a.keywords, "separators", Value::null());
    JsonOptions options;
    if (separators.is_array()) {
      const auto& items = separators.array->items;
      if (items.size() != 2 || !items[0].is(Kind::kString) || !items[1].is(Kind::kString))
        throw Failure{"separators must be a tuple of two strings"};
      options.has_separators = true;
      options.item_separator = items[0].s();
      options.key_separator = items[1].s();
    } else if (!separators.is(Kind::kNull)) {
      throw Failure{"If set, separators must be a tuple of two strings"};
    }
    if (indent.is(Kind::kInt) && indent.number != 0) {
      if (!std::isfinite(indent.number)) repeat_spaces(indent.number);  // RangeError
      if (indent.number > 4096) throw Failure{"indent width is too large"};
      options.indent = static_cast<int>(indent.number);
    }
    options.ensure_ascii = ensure_ascii.boolean;
    options.sort_keys = sort_keys.boolean;
    return Value::string(to_json(operand, options));
  }
  if (name == "join") {
    std::vector<std::string> pieces;
    if (operand.is(Kind::kString)) {
      for (char32_t c : js::code_points(operand.s())) {
        std::string ch;
        utf8_append(ch, c);
        pieces.push_back(std::move(ch));
      }
    } else if (operand.is_array()) {
      for (const Value& v : operand.array->items) pieces.push_back(raw_join_piece(v));
    } else {
      if (operand.is(Kind::kHole)) throw Failure{kHoleError};
      throw cannot_apply();
    }
    Arguments a = eval_arguments(call.list, env);
    Value sep = pick(a.positional, 0, a.keywords, "separator", Value::string(""));
    if (!sep.is(Kind::kString)) throw Failure{"separator must be a string"};
    std::string out;
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (i) out += sep.s();
      out += pieces[i];
      if (out.size() > kMaxStringBytes) throw Failure{"string exceeds the template size limit"};
    }
    return Value::string(std::move(out));
  }
  if (name == "int" || name == "float") {
    bool is_int = name == "int";
    Arguments a = eval_arguments(call.list, env);
    Value fallback = pick(a.positional, 0, a.keywords, "default",
                          is_int ? Value::integer(0) : Value::floating(0));
    if (operand.is(Kind::kString)) {
      double v = is_int ? js::parse_int(operand.s()) : js::parse_float(operand.s());
      if (std::isnan(v)) return fallback;
      return is_int ? Value::integer(v) : Value::floating(v);
    }
    if (operand.is_numeric()) return operand;
    if (operand.is(Kind::kBool))
      return is_int ? Value::integer(operand.boolean ? 1 : 0) : Value::floating(operand.boolean ? 1 : 0);
    if (operand.is(Kind::kHole)) throw Failure{kHoleError};
    throw cannot_apply();
  }
  if (name == "default") {
    Arguments a = eval_arguments(call.list, env);
    Value fallback = a.positional.size() > 0 ? a.positional[0] : Value::string("");
    Value boolean = pick(a.positional, 1, a.keywords, "boolean", Value::from_bool(false));
    if (!boolean.is(Kind::kBool)) throw Failure{"`default` filter flag must be a boolean"};
    if (operand.is(Kind::kUndefined) || (boolean.boolean && !truthy(operand))) return fallback;
    return operand;
  }
  if (operand.is(Kind::kHole)) throw Failure{kHoleError};
  if (operand.is_array()) {
    const auto& items = operand.array->items;
    if (name == "sort") {
      Arguments a = eval_arguments(call.list, env);
      Value reverse = pick(a.positional, 0, a.keywords, "reverse", Value::from_bool(false));
      if (!reverse.is(Kind::kBool)) throw Failure{"reverse must be a boolean"};
      Value case_sensitive = pick(a.positional, 1, a.keywords, "case_sensitive", Value::from_bool(false));
      if (!case_sensitive.is(Kind::kBool)) throw Failure{"case_sensitive must be a boolean"};
      Value attribute = pick(a.positional, 2, a.keywords, "attribute", Value::null());
      if (!attribute.is(Kind::kString) && !attribute.is(Kind::kInt) && !attribute.is(Kind::kNull))
        throw Failure{"attribute must be a string, integer, or null"};
      auto key = [&](const Value& item) {
        if (attribute.is(Kind::kNull)) return item;
        std::string path = attribute.is(Kind::kInt) ? js::number_to_string(attribute.number) : attribute.s();
        return attribute_path(item, path);
      };
      std::vector<Value> sorted = items;
      stable_sort_values(sorted, [&](const Value& x, const Value& y) {
        int r = compare_values(key(x), key(y), case_sensitive.boolean);
        return reverse.boolean ? -r : r;
      });
      return Value::of_array(heap_.new_array(std::move(sorted)));
    }
    if (name == "selectattr" || name == "rejectattr") {
      bool select = name == "selectattr";
      for (const Value& item : items)
        if (!item.is_attribute_container())
          throw Failure{"`" + name + "` can only be applied to array of objects"};
      for (const NodePtr& arg : call.list)
        if (arg->type != NodeType::kStringLiteral)
          throw Failure{"arguments of `" + name + "` must be strings"};
      if (call.list.empty() && !items.empty()) throw Failure{kHoleError};
      std::string attr = call.list.empty() ? "" : call.list[0]->text;
      std::string test = call.list.size() > 1 ? call.list[1]->text : "";
      Value argument = call.list.size() > 2 ? Value::string(call.list[2]->text) : Value::hole();
      if (call.list.size() > 1 && !has_test(test)) throw Failure{"Unknown test: " + test};
      std::vector<Value> out;
      for (const Value& item : items) {
        const Value* a = item.object->find(attr);
        bool result = false;
        if (a) result = call.list.size() > 1 ? run_test(test, *a, &argument) : truthy(*a);
        if (select == result) out.push_back(item);
      }
      return Value::of_array(heap_.new_array(std::move(out)));
    }
    if (name == "map") {
      Arguments a = eval_arguments(call.list, env);
      const Value* attr = keyword(a.keywords, "attribute");
      if (!attr)
        throw Failure{"`map` expressions without `attribute` set are not currently supported."};
      if (!attr->is(Kind::kString)) throw Failure{"attribute must be a string"};
      const Value* fallback = keyword(a.keywords, "default");
      std::vector<Value> out;
      for (const Value& item : items) {
        if (!item.is_attribute_container()) throw Failure{"items in map must be an object"};
        Value v = attribute_path(item, attr->s());
        out.push_back(v.is(Kind::kUndefined) && fallback ? *fallback : v);
      }
      return Value::of_array(heap_.new_array(std::move(out)));
    }
    throw Failure{"Unknown ArrayValue filter: " + name};
  }
  if (operand.is(Kind::kString)) {
    if (name == "indent") {
      Arguments a = eval_arguments(call.list, env);
      Value width = pick(a.positional, 0, a.keywords, "width", Value::integer(4));
      if (!width.is(Kind::kInt)) throw Failure{"width must be a number"};
      Value first = pick(a.positional, 1, a.keywords, "first", Value::from_bool(false));
      Value blank = pick(a.positional, 2, a.keywords, "blank", Value::from_bool(false));
      return Value::string(
          indent_lines(operand.s(), repeat_spaces(width.number), raw_truthy(first), raw_truthy(blank)));
    }
    if (name == "replace") {
      Arguments a = eval_arguments(call.list, env);
      a.positional.push_back(kwargs_value(std::move(a.keywords)));
      Value fn = string_member(heap_, operand, "replace");
      return fn.function->call(a.positional, env);
    }
    throw Failure{"Unknown StringValue filter: " + name};
  }
  if (operand.is(Kind::kObject)) {
    Value builtin = object_member(heap_, operand, name);
    if (builtin.is(Kind::kFunction)) {
      Arguments a = eval_arguments(call.list, env);
      if (!a.keywords.empty()) a.positional.push_back(kwargs_value(std::move(a.keywords)));
      return builtin.function->call(a.positional, env);
    }
    throw Failure{"Unknown ObjectValue filter: " + name};
  }
  throw cannot_apply();
}

}  // namespace meshlm::tmpl
