#include "template/value.h"

#include <algorithm>
#include <cmath>

#include "template/js_string.h"

namespace meshlm::tmpl {

Value Value::string(std::string s) {
  if (s.size() > kMaxStringBytes) throw Failure{"string exceeds the template size limit"};
  Value v = of_kind(Kind::kString);
  v.str = std::make_shared<const std::string>(std::move(s));
  return v;
}

bool Value::is_kwargs() const { return kind == Kind::kObject && object->kwargs; }

const Value* Object::find(std::string_view key) const {
  for (const auto& [k, v] : entries)
    if (k == key) return &v;
  return nullptr;
}

void Object::set(const std::string& key, Value value) {
  for (auto& [k, v] : entries) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(key, std::move(value));
}

Value Env::lookup(std::string_view name) const {
  for (const Env* e = this; e; e = e->parent)
    for (const auto& [k, v] : e->vars)
      if (k == name) return v;
  return Value::undefined();
}

bool Env::has_own(std::string_view name) const {
  for (const auto& [k, v] : vars)
    if (k == name) return true;
  return false;
}

void Env::set(const std::string& name, Value value) {
  if (value.kind == Kind::kHole) value = Value::undefined();
  for (auto& [k, v] : vars) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  vars.emplace_back(name, std::move(value));
}

void Heap::charge(size_t n) {
  items_ += n + 1;
  if (items_ > kMaxHeapItems) throw Failure{"template allocated too many values"};
}

Array* Heap::new_array(std::vector<Value> items) {
  charge(items.size());
  arrays_.push_back(Array{std::move(items)});
  return &arrays_.back();
}

Object* Heap::new_object(bool kwargs) {
  charge(0);
  objects_.emplace_back();
  objects_.back().kwargs = kwargs;
  return &objects_.back();
}

Function* Heap::new_function(NativeFunction fn) {
  charge(0);
  functions_.push_back(Function{std::move(fn)});
  return &functions_.back();
}

Env* Heap::new_env(Env* parent) {
  charge(0);
  envs_.emplace_back();
  envs_.back().parent = parent;
  return &envs_.back();
}

namespace {

// An ECMAScript array index ("0", "17"; no sign or leading zero; below 2^32 - 1).
bool is_array_index(const std::string& key, uint64_t& index) {
  if (key.empty() || key.size() > 10 || (key.size() > 1 && key[0] == '0')) return false;
  uint64_t v = 0;
  for (char c : key) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + uint64_t(c - '0');
  }
  index = v;
  return v < 4294967295ULL;
}

template <class J>
Value convert(const J& j, Heap& heap, int depth) {
  if (depth > kMaxDataDepth) throw Failure{"template variables are nested too deeply"};
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Value::null();
    case nlohmann::json::value_t::boolean:
      return Value::from_bool(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::integer(static_cast<double>(j.template get<int64_t>()));
    case nlohmann::json::value_t::number_unsigned:
      return Value::integer(static_cast<double>(j.template get<uint64_t>()));
    case nlohmann::json::value_t::number_float: {
      double d = j.template get<double>();
      bool integral = std::isfinite(d) && std::trunc(d) == d;
      return integral ? Value::integer(d) : Value::floating(d);
    }
    case nlohmann::json::value_t::string:
      return Value::string(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(convert(e, heap, depth + 1));
      return Value::of_array(heap.new_array(std::move(items)));
    }
    case nlohmann::json::value_t::object: {
      Object* o = heap.new_object();
      heap.charge(j.size());
      std::vector<std::pair<uint64_t, std::string>> indexed;
      for (auto it = j.begin(); it != j.end(); ++it) {
        uint64_t index = 0;
        if (is_array_index(it.key(), index)) indexed.emplace_back(index, it.key());
      }
      std::sort(indexed.begin(), indexed.end());
      for (const auto& [index, key] : indexed) o->set(key, convert(j.at(key), heap, depth + 1));
      for (auto it = j.begin(); it != j.end(); ++it) {
        uint64_t index = 0;
        if (!is_array_index(it.key(), index)) o->set(it.key(), convert(it.value(), heap, depth + 1));
      }
      return Value::of_object(o);
    }
    default:
      throw Failure{"template variables must be JSON values (got binary data)"};
  }
}

// An approximation of String.prototype.localeCompare (ICU root collation) for sort_keys.
int collation_class(char32_t c) {
  if (c < 0x80) {
    if (c >= '0' && c <= '9') return 1;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 2;
    return 0;
  }
  return 3;
}

bool locale_less(const std::string& a, const std::string& b) {
  std::vector<char32_t> x = js::code_points(a), y = js::code_points(b);
  auto fold = [](char32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; };
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
    int cx = collation_class(x[i]), cy = collation_class(y[i]);
    if (cx != cy) return cx < cy;
    if (fold(x[i]) != fold(y[i])) return fold(x[i]) < fold(y[i]);
  }
  if (x.size() != y.size()) return x.size() < y.size();
  for (size_t i = 0; i < x.size(); ++i)
    if (x[i] != y[i]) return x[i] > y[i];  // lower case before upper case
  return false;
}

std::string runtime_to_string(const Value& v, int depth);

}  // namespace

Value from_json(const nlohmann::json& j, Heap& heap, int depth) { return convert(j, heap, depth); }
Value from_json(const nlohmann::ordered_json& j, Heap& heap, int depth) {
  return convert(j, heap, depth);
}

const char* type_name(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined: return "UndefinedValue";
    case Kind::kNull: return "NullValue";
    case Kind::kBool: return "BooleanValue";
    case Kind::kInt: return "IntegerValue";
    case Kind::kFloat: return "FloatValue";
    case Kind::kString: return "StringValue";
    case Kind::kArray: return "ArrayValue";
    case Kind::kTuple: return "TupleValue";
    case Kind::kObject: return v.object->kwargs ? "KeywordArgumentsValue" : "ObjectValue";
    case Kind::kNamespace: return "NamespaceValue";
    case Kind::kFunction: return "FunctionValue";
    case Kind::kHole: return "undefined";
  }
  return "?";
}

bool raw_truthy(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
    case Kind::kNull:
    case Kind::kHole: return false;
    case Kind::kBool: return v.boolean;
    case Kind::kInt:
    case Kind::kFloat: return v.number != 0 && !std::isnan(v.number);
    case Kind::kString: return !v.s().empty();
    default: return true;
  }
}

bool truthy(const Value& v) {
  if (v.kind == Kind::kHole) throw Failure{"TypeError: cannot read properties of undefined"};
  if (v.is_array()) return !v.array->items.empty();
  if (v.kind == Kind::kObject) return !v.object->entries.empty();
  return raw_truthy(v);
}

namespace {

std::string runtime_to_string(const Value& v, int depth) {
  switch (v.kind) {
    case Kind::kUndefined: return "undefined";
    case Kind::kNull: return "null";
    case Kind::kBool: return v.boolean ? "true" : "false";
    case Kind::kInt: return js::number_to_string(v.number);
    case Kind::kFloat: return js::float_to_string(v.number);
    case Kind::kString: return v.s();
    case Kind::kFunction: throw Failure{"cannot convert a function to a string"};
    case Kind::kHole: throw Failure{"TypeError: cannot read properties of undefined"};
    default: return to_json(v, JsonOptions{}, depth, false);
  }
}

}  // namespace

std::string to_output(const Value& v, int depth) {
  if (v.kind == Kind::kNull || v.kind == Kind::kUndefined) return std::string();
  return runtime_to_string(v, depth);
}

std::string raw_to_string(const Value& v, int depth) {
  if (depth > kMaxDataDepth) throw Failure{"value is nested too deeply"};
  switch (v.kind) {
    case Kind::kFloat: return js::number_to_string(v.number);
    case Kind::kArray:
    case Kind::kTuple: {
      std::string out;
      for (size_t i = 0; i < v.array->items.size(); ++i) {
        if (i) out += ',';
        out += runtime_to_string(v.array->items[i], depth + 1);
        if (out.size() > kMaxStringBytes) throw Failure{"string exceeds the template size limit"};
      }
      return out;
    }
    case Kind::kObject:
    case Kind::kNamespace: return "[object Map]";
    default: return runtime_to_string(v, depth);
  }
}

std::string raw_join_piece(const Value& v, int depth) {
  if (v.kind == Kind::kNull || v.kind == Kind::kUndefined || v.kind == Kind::kHole) return "";
  return raw_to_string(v, depth);
}

std::string to_json(const Value& v, const JsonOptions& options, int depth, bool undefined_to_null) {
  if (depth > kMaxDataDepth) throw Failure{"value is nested too deeply for JSON"};
  std::string item_sep = ", ", key_sep = ": ";
  if (options.has_separators) {
    item_sep = options.item_separator;
    key_sep = options.key_separator;
  } else if (options.indent) {
    item_sep = ",";
  }
  switch (v.kind) {
    case Kind::kNull: return "null";
    case Kind::kUndefined: return undefined_to_null ? "null" : "undefined";
    case Kind::kInt:
    case Kind::kFloat: return std::isfinite(v.number) ? js::number_to_string(v.number) : "null";
    case Kind::kBool: return v.boolean ? "true" : "false";
    case Kind::kString: return js::json_quote(v.s(), options.ensure_ascii);
    case Kind::kArray:
    case Kind::kObject:
    case Kind::kNamespace: {
      if (v.is_kwargs()) break;
      if (options.indent < 0) throw Failure{"RangeError: Invalid count value: " + std::to_string(options.indent)};
      std::string indent_unit(options.indent, ' ');
      std::string base = "\n";
      for (int i = 0; i < depth && options.indent; ++i) base += indent_unit;
      std::string child = base + indent_unit;
      std::string out;
      auto check = [&] {
        if (out.size() > kMaxStringBytes) throw Failure{"string exceeds the template size limit"};
      };
      if (v.kind == Kind::kArray) {
        const auto& items = v.array->items;
        bool pretty = options.indent && !items.empty();
        out = pretty ? "[" + child : "[";
        for (size_t i = 0; i < items.size(); ++i) {
          if (i) out += pretty ? item_sep + child : item_sep;
          out += to_json(items[i], options, depth + 1, undefined_to_null);
          check();
        }
        out += pretty ? base + "]" : "]";
        return out;
      }
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& e : v.object->entries) entries.push_back(&e);
      if (options.sort_keys)
        std::stable_sort(entries.begin(), entries.end(),
                         [](auto* a, auto* b) { return locale_less(a->first, b->first); });
      bool pretty = options.indent && !entries.empty();
      out = "{";
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += item_sep;
        if (options.indent) out += child;
        out += js::json_quote(entries[i]->first, options.ensure_ascii);
        out += key_sep;
        out += to_json(entries[i]->second, options, depth + 1, undefined_to_null);
        check();
      }
      out += pretty ? base + "}" : "}";
      return out;
    }
    default: break;
  }
  if (v.kind == Kind::kHole) throw Failure{"TypeError: cannot read properties of undefined"};
  throw Failure{std::string("Cannot convert to JSON: ") + type_name(v)};
}

namespace {

enum class Bare { kUndefined, kNull, kBool, kNumber, kString, kObject };

Bare bare(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
    case Kind::kHole: return Bare::kUndefined;
    case Kind::kNull: return Bare::kNull;
    case Kind::kBool: return Bare::kBool;
    case Kind::kInt:
    case Kind::kFloat: return Bare::kNumber;
    case Kind::kString: return Bare::kString;
    default: return Bare::kObject;
  }
}

const void* identity(const Value& v) {
  return v.is_array() ? static_cast<const void*>(v.array)
         : v.kind == Kind::kFunction ? static_cast<const void*>(v.function)
                                     : static_cast<const void*>(v.object);
}

}  // namespace

bool strict_equals(const Value& a, const Value& b) {
  Bare x = bare(a), y = bare(b);
  if (x != y) return false;
  switch (x) {
    case Bare::kUndefined:
    case Bare::kNull: return true;
    case Bare::kBool: return a.boolean == b.boolean;
    case Bare::kNumber: return a.number == b.number;
    case Bare::kString: return a.s() == b.s();
    case Bare::kObject: return identity(a) == identity(b);
  }
  return false;
}

bool loose_equals(const Value& a, const Value& b) {
  Bare x = bare(a), y = bare(b);
  if (x == y) return strict_equals(a, b);
  bool xn = x == Bare::kNull || x == Bare::kUndefined, yn = y == Bare::kNull || y == Bare::kUndefined;
  if (xn || yn) return xn && yn;
  if (x == Bare::kBool) return loose_equals(Value::integer(a.boolean ? 1 : 0), b);
  if (y == Bare::kBool) return loose_equals(a, Value::integer(b.boolean ? 1 : 0));
  if (x == Bare::kNumber && y == Bare::kString) return a.number == js::string_to_number(b.s());
  if (x == Bare::kString && y == Bare::kNumber) return js::string_to_number(a.s()) == b.number;
  if (x == Bare::kObject) {
    if (a.kind == Kind::kFunction) return false;
    return loose_equals(Value::string(raw_to_string(a)), b);
  }
  if (y == Bare::kObject) {
    if (b.kind == Kind::kFunction) return false;
    return loose_equals(a, Value::string(raw_to_string(b)));
  }
  return false;
}

}  // namespace meshlm::tmpl
