// Runtime values of the template interpreter, modelled on @huggingface/jinja's RuntimeValue
// classes (IntegerValue, FloatValue, StringValue, ArrayValue, TupleValue, ObjectValue,
// KeywordArgumentsValue, NamespaceValue, FunctionValue, NullValue, UndefinedValue).
//
// Containers, functions and scopes live in a per-render Heap (stable addresses, freed together),
// so values are cheap to copy, identity comparisons (`==` on dicts/lists) work as in JavaScript,
// and a namespace that contains itself cannot leak. Strings are immutable and shared.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace meshlm::tmpl {

// A runtime failure to be reported with the location of the node being evaluated.
struct Failure {
  std::string message;
};

enum class Kind : uint8_t {
  kUndefined,
  kNull,
  kBool,
  kInt,
  kFloat,
  kString,
  kArray,
  kTuple,
  kObject,     // also KeywordArgumentsValue (Object::kwargs)
  kNamespace,
  kFunction,
  kHole,       // a bare JavaScript `undefined` (e.g. `[] | first`): almost any use is a TypeError
};

struct Array;
struct Object;
struct Function;
struct Env;

struct Value {
  Kind kind = Kind::kUndefined;
  bool boolean = false;
  double number = 0;
  std::shared_ptr<const std::string> str;
  union {
    Array* array;
    Object* object;
    Function* function;
  };

  Value() : array(nullptr) {}
  static Value undefined() { return Value(); }
  static Value hole() { return of_kind(Kind::kHole); }
  static Value null() { return of_kind(Kind::kNull); }
  static Value from_bool(bool b) {
    Value v = of_kind(Kind::kBool);
    v.boolean = b;
    return v;
  }
  static Value integer(double d) {
    Value v = of_kind(Kind::kInt);
    v.number = d;
    return v;
  }
  static Value floating(double d) {
    Value v = of_kind(Kind::kFloat);
    v.number = d;
    return v;
  }
  // Throws Failure when the string exceeds kMaxStringBytes.
  static Value string(std::string s);
  static Value of_array(Array* a, bool tuple = false) {
    Value v = of_kind(tuple ? Kind::kTuple : Kind::kArray);
    v.array = a;
    return v;
  }
  static Value of_object(Object* o) {
    Value v = of_kind(Kind::kObject);
    v.object = o;
    return v;
  }
  static Value of_namespace(Object* o) {
    Value v = of_kind(Kind::kNamespace);
    v.object = o;
    return v;
  }
  static Value of_function(Function* f) {
    Value v = of_kind(Kind::kFunction);
    v.function = f;
    return v;
  }

  const std::string& s() const { return *str; }
  bool is(Kind k) const { return kind == k; }
  bool is_array() const { return kind == Kind::kArray || kind == Kind::kTuple; }  // instanceof ArrayValue
  bool is_numeric() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  bool is_attribute_container() const { return kind == Kind::kObject || kind == Kind::kNamespace; }
  bool is_kwargs() const;

 private:
  static Value of_kind(Kind k) {
    Value v;
    v.kind = k;
    return v;
  }
};

struct Array {
  std::vector<Value> items;
};

// Insertion-ordered string map (a JavaScript Map).
struct Object {
  std::vector<std::pair<std::string, Value>> entries;
  bool kwargs = false;
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value value);
};

using NativeFunction = std::function<Value(std::vector<Value>& args, Env* caller_scope)>;
struct Function {
  NativeFunction call;
};

// A scope: variables of one block level, chained to the enclosing one.
struct Env {
  Env* parent = nullptr;
  std::vector<std::pair<std::string, Value>> vars;
  Value lookup(std::string_view name) const;
  void set(const std::string& name, Value value);
  bool has_own(std::string_view name) const;
};

inline constexpr size_t kMaxStringBytes = size_t(64) << 20;
inline constexpr size_t kMaxHeapItems = size_t(8) << 20;
inline constexpr int kMaxDataDepth = 512;

// Owner of everything a render allocates.
class Heap {
 public:
  Array* new_array(std::vector<Value> items = {});
  Object* new_object(bool kwargs = false);
  Function* new_function(NativeFunction fn);
  Env* new_env(Env* parent);
  // Counts `n` more container items against kMaxHeapItems (throws Failure beyond it).
  void charge(size_t n);

 private:
  std::deque<Array> arrays_;
  std::deque<Object> objects_;
  std::deque<Function> functions_;
  std::deque<Env> envs_;
  size_t items_ = 0;
};

// convertToRuntimeValues() of a parsed JSON document: integral numbers are integers, object
// keys in JavaScript's Object.entries order (array-index keys first, ascending).
Value from_json(const nlohmann::json& j, Heap& heap, int depth = 0);
Value from_json(const nlohmann::ordered_json& j, Heap& heap, int depth = 0);

// Kind names as @huggingface/jinja spells them in error messages ("StringValue", ...).
const char* type_name(const Value& v);

// JavaScript truthiness of the bare value (`!!value.value`): any container is true.
bool raw_truthy(const Value& v);
// Python-like truthiness (`__bool__`): empty arrays/objects are false.
bool truthy(const Value& v);

// RuntimeValue.toString(): what `{{ v }}` prints (undefined/null print nothing).
std::string to_output(const Value& v, int depth = 0);
// String(v.value): what `~` and `+` concatenate ("1" for 1.0, "[object Map]" for a dict).
std::string raw_to_string(const Value& v, int depth = 0);
// An element of Array.prototype.join: null and undefined give "".
std::string raw_join_piece(const Value& v, int depth = 0);

struct JsonOptions {
  int indent = 0;  // 0: no indentation
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool has_separators = false;
  std::string item_separator, key_separator;
};
// toJSON() of @huggingface/jinja (tojson filter, printing of lists and dicts).
std::string to_json(const Value& v, const JsonOptions& options, int depth = 0,
                    bool undefined_to_null = true);

// Loose (`==`) and strict (`===`, SameValueZero for `unique`) equality of the bare values.
bool loose_equals(const Value& a, const Value& b);
bool strict_equals(const Value& a, const Value& b);

}  // namespace meshlm::tmpl
