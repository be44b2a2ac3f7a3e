#include "template/builtins.h"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "core/utf8.h"
#include "template/js_string.h"

namespace meshlm::tmpl {
namespace {

Value make_function(Heap& heap, NativeFunction fn) {
  return Value::of_function(heap.new_function(std::move(fn)));
}

Value string_array(Heap& heap, const std::vector<std::string>& parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (const auto& p : parts) items.push_back(Value::string(p));
  return Value::of_array(heap.new_array(std::move(items)));
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

Value affix_method(Heap& heap, const Value& self, bool prefix) {
  const char* name = prefix ? "startswith" : "endswith";
  return make_function(heap, [self, prefix, name](std::vector<Value>& args, Env*) {
    if (args.empty()) throw Failure{std::string(name) + "() requires at least one argument"};
    auto test = [&](const std::string& p) {
      return prefix ? starts_with(self.s(), p) : ends_with(self.s(), p);
    };
    const Value& pattern = args[0];
    if (pattern.is(Kind::kString)) return Value::from_bool(test(pattern.s()));
    if (pattern.is_array()) {
      for (const Value& item : pattern.array->items) {
        if (!item.is(Kind::kString))
          throw Failure{std::string(name) + "() tuple elements must be strings"};
        if (test(item.s())) return Value::from_bool(true);
      }
      return Value::from_bool(false);
    }
    throw Failure{std::string(name) + "() argument must be a string or tuple of strings"};
  });
}

std::vector<std::string> split_whitespace(const std::string& s, double maxsplit) {
  std::string text = js::trim_start(s);
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    if (js::is_space(utf8_next_lossy(text, j))) {
      i = j;
      continue;
    }
    size_t start = i, end = i;
    while (end < text.size()) {
      size_t k = end;
      if (js::is_space(utf8_next_lossy(text, k))) break;
      end = k;
    }
    if (maxsplit != -1 && static_cast<double>(out.size()) >= maxsplit) {
      out.push_back(text.substr(start));
      break;
    }
    out.push_back(text.substr(start, end - start));
    i = end;
  }
  return out;
}

std::vector<std::string> split_on(const std::string& s, const std::string& sep, double maxsplit) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t at = s.find(sep, start);
    if (at == std::string::npos) break;
    out.push_back(s.substr(start, at - start));
    start = at + sep.size();
  }
  out.push_back(s.substr(start));
  double len = static_cast<double>(out.size());
  if (maxsplit != -1 && len > maxsplit) {
    size_t from = maxsplit < 0 ? static_cast<size_t>(std::max(len + maxsplit, 0.0))
                               : static_cast<size_t>(maxsplit);
    std::string rest;
    for (size_t k = from; k < out.size(); ++k) {
      if (k > from) rest += sep;
      rest += out[k];
    }
    out.resize(from);
    out.push_back(rest);
  }
  return out;
}

Value split_method(Heap& heap, const Value& self) {
  return make_function(heap, [self, &heap](std::vector<Value>& args, Env*) {
    Value sep = args.size() > 0 ? args[0] : Value::null();
    if (!sep.is(Kind::kString) && !sep.is(Kind::kNull))
      throw Failure{"sep argument must be a string or null"};
    Value maxsplit = args.size() > 1 ? args[1] : Value::integer(-1);
    if (!maxsplit.is(Kind::kInt)) throw Failure{"maxsplit argument must be a number"};
    if (sep.is(Kind::kNull)) return string_array(heap, split_whitespace(self.s(), maxsplit.number));
    if (sep.s().empty()) throw Failure{"empty separator"};
    return string_array(heap, split_on(self.s(), sep.s(), maxsplit.number));
  });
}

Value replace_method(Heap& heap, const Value& self) {
  return make_function(heap, [self](std::vector<Value>& args, Env*) {
    if (args.size() < 2) throw Failure{"replace() requires at least two arguments"};
    if (!args[0].is(Kind::kString) || !args[1].is(Kind::kString))
      throw Failure{"replace() arguments must be strings"};
    Value count = Value::null();
    if (args.size() > 2) {
      if (args[2].is_kwargs()) {
        const Value* c = args[2].object->find("count");
        count = c ? *c : Value::null();
      } else {
        count = args[2];
      }
    }
    if (!count.is(Kind::kInt) && !count.is(Kind::kNull))
      throw Failure{"replace() count argument must be a number or null"};
    double n = count.is(Kind::kNull) ? -1 : count.number;
    return Value::string(replace_all(self.s(), args[0].s(), args[1].s(), n));
  });
}

Value simple_string_method(Heap& heap, const Value& self, std::string (*fn)(std::string_view)) {
  return make_function(heap, [self, fn](std::vector<Value>&, Env*) { return Value::string(fn(self.s())); });
}

std::string upper_of(std::string_view s) { return js::to_upper(s); }
std::string lower_of(std::string_view s) { return js::to_lower(s); }
std::string strip_of(std::string_view s) { return js::trim(s); }
std::string lstrip_of(std::string_view s) { return js::trim_start(s); }
std::string rstrip_of(std::string_view s) { return js::trim_end(s); }
std::string title_of(std::string_view s) { return js::title_case(s); }
std::string capitalize_of(std::string_view s) { return js::capitalize(s); }

Value pairs_of(Heap& heap, const Object& o) {
  std::vector<Value> items;
  for (const auto& [k, v] : o.entries)
    items.push_back(Value::of_array(heap.new_array({Value::string(k), v})));
  return Value::of_array(heap.new_array(std::move(items)));
}

Value dictsort(Heap& heap, const Object& o, std::vector<Value>& args) {
  const Object* kwargs = nullptr;
  std::vector<Value> positional;
  for (const Value& a : args) {
    if (a.is_kwargs()) kwargs = a.object;
    else positional.push_back(a);
  }
  auto pick = [&](size_t i, const char* key, Value fallback) {
    if (i < positional.size()) return positional[i];
    if (kwargs)
      if (const Value* v = kwargs->find(key)) return *v;
    return fallback;
  };
  Value case_sensitive = pick(0, "case_sensitive", Value::from_bool(false));
  if (!case_sensitive.is(Kind::kBool)) throw Failure{"case_sensitive must be a boolean"};
  Value by = pick(1, "by", Value::string("key"));
  if (!by.is(Kind::kString)) throw Failure{"by must be a string"};
  if (by.s() != "key" && by.s() != "value") throw Failure{"by must be either 'key' or 'value'"};
  Value reverse = pick(2, "reverse", Value::from_bool(false));
  if (!reverse.is(Kind::kBool)) throw Failure{"reverse must be a boolean"};
  Value pairs = pairs_of(heap, o);
  size_t index = by.s() == "key" ? 0 : 1;
  stable_sort_values(pairs.array->items, [&](const Value& a, const Value& b) {
    int r = compare_values(a.array->items[index], b.array->items[index], case_sensitive.boolean);
    return reverse.boolean ? -r : r;
  });
  return pairs;
}

const char* kMonthsShort[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
const char* kMonthsLong[] = {"January", "February", "March",     "April",   "May",      "June",
                             "July",    "August",   "September", "October", "November", "December"};

// The clock strftime_now reads: the wall clock, or MESHLM_TEMPLATE_NOW (seconds since the epoch)
// when set, so that a rendered prompt can be reproduced (tests compare renders made minutes apart,
// possibly either side of midnight).
time_t template_now() {
  if (const char* pinned = std::getenv("MESHLM_TEMPLATE_NOW"); pinned != nullptr && *pinned != '\0') {
    char* end = nullptr;
    long long v = std::strtoll(pinned, &end, 10);
    if (end != nullptr && *end == '\0') return static_cast<time_t>(v);
  }
  return time(nullptr);
}

std::string strftime_now(const std::string& format) {
  time_t now = template_now();
  struct tm t {};
  localtime_r(&now, &t);
  auto pad2 = [](int n) { return (n < 10 ? "0" : "") + std::to_string(n); };
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] == '%' && i + 1 < format.size()) {
      char c = format[i + 1];
      std::string piece;
      bool known = true;
      switch (c) {
        case 'Y': piece = std::to_string(t.tm_year + 1900); break;
        case 'm': piece = pad2(t.tm_mon + 1); break;
        case 'd': piece = pad2(t.tm_mday); break;
        case 'b': piece = kMonthsShort[t.tm_mon]; break;
        case 'B': piece = kMonthsLong[t.tm_mon]; break;
        case 'H': piece = pad2(t.tm_hour); break;
        case 'M': piece = pad2(t.tm_min); break;
        case '%': piece = "%"; break;
        default: known = false;
      }
      if (known) {
        out += piece;
        ++i;
        continue;
      }
    }
    out += format[i];
  }
  return out;
}

// The bare value a JavaScript native function receives (args.map(x => x.value)), as a number.
double number_arg(const Value& v, const char* fn) {
  if (v.is_numeric()) return v.number;
  if (v.is(Kind::kBool)) return v.boolean ? 1 : 0;
  throw Failure{std::string(fn) + "() arguments must be numbers, got " + type_name(v)};
}

Value number_value(double d) {
  return std::isfinite(d) && std::trunc(d) == d ? Value::integer(d) : Value::floating(d);
}

}  // namespace

Value string_member(Heap& heap, const Value& s, std::string_view name) {
  if (name == "length") return Value::integer(static_cast<double>(js::utf16_length(s.s())));
  if (name == "upper") return simple_string_method(heap, s, upper_of);
  if (name == "lower") return simple_string_method(heap, s, lower_of);
  if (name == "strip") return simple_string_method(heap, s, strip_of);
  if (name == "lstrip") return simple_string_method(heap, s, lstrip_of);
  if (name == "rstrip") return simple_string_method(heap, s, rstrip_of);
  if (name == "title") return simple_string_method(heap, s, title_of);
  if (name == "capitalize") return simple_string_method(heap, s, capitalize_of);
  if (name == "startswith") return affix_method(heap, s, true);
  if (name == "endswith") return affix_method(heap, s, false);
  if (name == "split") return split_method(heap, s);
  if (name == "replace") return replace_method(heap, s);
  return Value::undefined();
}

Value object_member(Heap& heap, const Value& d, std::string_view name) {
  const Object* o = d.object;
  if (name == "get") {
    return make_function(heap, [o](std::vector<Value>& args, Env*) {
      if (args.empty()) throw Failure{"TypeError: get() requires a key"};
      if (!args[0].is(Kind::kString))
        throw Failure{std::string("Object key must be a string: got ") + type_name(args[0])};
      if (const Value* v = o->find(args[0].s())) return *v;
      return args.size() > 1 ? args[1] : Value::null();
    });
  }
  if (name == "items")
    return make_function(heap, [o, &heap](std::vector<Value>&, Env*) { return pairs_of(heap, *o); });
  if (name == "keys") {
    return make_function(heap, [o, &heap](std::vector<Value>&, Env*) {
      std::vector<Value> keys;
      for (const auto& [k, v] : o->entries) keys.push_back(Value::string(k));
      return Value::of_array(heap.new_array(std::move(keys)));
    });
  }
  if (name == "values") {
    return make_function(heap, [o, &heap](std::vector<Value>&, Env*) {
      std::vector<Value> values;
      for (const auto& [k, v] : o->entries) values.push_back(v);
      return Value::of_array(heap.new_array(std::move(values)));
    });
  }
  if (name == "dictsort") {
    return make_function(heap, [o, &heap](std::vector<Value>& args, Env*) {
      return dictsort(heap, *o, args);
    });
  }
  return Value::undefined();
}

bool has_test(std::string_view name) {
  static const char* kTests[] = {"boolean", "callable", "odd",      "even",    "false",
                                 "true",    "none",     "string",   "number",  "integer",
                                 "iterable", "mapping", "sequence", "lower",   "upper",
                                 "defined", "undefined", "equalto", "eq"};
  return std::any_of(std::begin(kTests), std::end(kTests), [&](const char* t) { return name == t; });
}

bool run_test(std::string_view name, const Value& v, const Value* argument) {
  if (v.is(Kind::kHole) && name != "callable" && name != "mapping" && name != "number" &&
      name != "integer" && name != "sequence")
    throw Failure{"TypeError: cannot read properties of undefined"};
  if (name == "boolean") return v.is(Kind::kBool);
  if (name == "callable") return v.is(Kind::kFunction);
  if (name == "odd" || name == "even") {
    if (!v.is(Kind::kInt)) throw Failure{"cannot " + std::string(name) + " on " + type_name(v)};
    double r = std::fmod(v.number, 2.0);
    return name == "odd" ? r != 0 : r == 0;
  }
  if (name == "false") return v.is(Kind::kBool) && !v.boolean;
  if (name == "true") return v.is(Kind::kBool) && v.boolean;
  if (name == "none") return v.is(Kind::kNull);
  if (name == "string") return v.is(Kind::kString);
  if (name == "number") return v.is_numeric();
  if (name == "integer") return v.is(Kind::kInt);
  if (name == "iterable") return v.is(Kind::kArray) || v.is(Kind::kString);
  if (name == "mapping") return v.is(Kind::kObject);
  if (name == "sequence") return v.is_array() || v.is(Kind::kObject) || v.is(Kind::kString);
  if (name == "lower") return v.is(Kind::kString) && v.s() == js::to_lower(v.s());
  if (name == "upper") return v.is(Kind::kString) && v.s() == js::to_upper(v.s());
  if (name == "defined") return !v.is(Kind::kUndefined);
  if (name == "undefined") return v.is(Kind::kUndefined);
  if (name == "equalto" || name == "eq") {
    if (!argument || argument->is(Kind::kHole))
      throw Failure{"TypeError: cannot read properties of undefined (reading 'value')"};
    return strict_equals(v, *argument);
  }
  throw Failure{"Unknown test: " + std::string(name)};
}

void install_globals(Heap& heap, Env* env) {
  env->set("namespace", make_function(heap, [&heap](std::vector<Value>& args, Env*) {
             std::vector<Value> positional = args;
             const Object* kwargs = nullptr;
             if (!positional.empty() && positional.back().is_kwargs()) {
               kwargs = positional.back().object;
               positional.pop_back();
             }
             if (positional.size() > 1)
               throw Failure{"namespace expected at most 1 argument, got " +
                             std::to_string(positional.size())};
             Object* ns = heap.new_object();
             if (positional.size() == 1) {
               const Value& source = positional[0];
               if (source.is(Kind::kObject)) {
                 for (const auto& [k, v] : source.object->entries) ns->set(k, v);
               } else if (source.is_array()) {
                 for (const Value& pair : source.array->items) {
                   std::vector<Value> kv;
                   if (pair.is_array()) {
                     kv = pair.array->items;
                   } else if (pair.is(Kind::kString)) {
                     for (char32_t c : js::code_points(pair.s())) {
                       std::string ch;
                       utf8_append(ch, c);
                       kv.push_back(Value::string(ch));
                     }
                   }
                   if (kv.size() != 2)
                     throw Failure{"namespace expected an object or an iterable of [key, value] pairs"};
                   if (!kv[0].is(Kind::kString)) throw Failure{"namespace keys must be strings"};
                   ns->set(kv[0].s(), kv[1]);
                 }
               } else {
                 throw Failure{std::string("'") + type_name(source) + "' object is not iterable"};
               }
             }
             if (kwargs)
               for (const auto& [k, v] : kwargs->entries) ns->set(k, v);
             return Value::of_namespace(ns);
           }));
  env->set("false", Value::from_bool(false));
  env->set("true", Value::from_bool(true));
  env->set("none", Value::null());
  env->set("raise_exception", make_function(heap, [](std::vector<Value>& args, Env*) -> Value {
             std::string message;
             if (!args.empty() && !args[0].is(Kind::kUndefined)) message = raw_to_string(args[0]);
             throw Error("template", message);
           }));
  env->set("range", make_function(heap, [&heap](std::vector<Value>& args, Env*) {
             if (args.empty()) throw Failure{"range() expects at least one argument"};
             double start = 0, stop = 0, step = 1;
             if (args.size() == 1 || args[1].is(Kind::kUndefined)) {
               stop = number_arg(args[0], "range");
             } else {
               start = number_arg(args[0], "range");
               stop = number_arg(args[1], "range");
             }
             if (args.size() > 2 && !args[2].is(Kind::kUndefined)) step = number_arg(args[2], "range");
             if (step == 0) throw Failure{"range() step must not be zero"};
             double count = std::ceil((stop - start) / step);
             if (!(count <= static_cast<double>(kMaxHeapItems))) throw Failure{"range() is too large"};
             std::vector<Value> items;
             for (double i = start; step > 0 ? i < stop : i > stop; i += step) {
               items.push_back(number_value(i));
               if (items.size() > kMaxHeapItems) throw Failure{"range() is too large"};
             }
             return Value::of_array(heap.new_array(std::move(items)));
           }));
  env->set("strftime_now", make_function(heap, [](std::vector<Value>& args, Env*) {
             if (args.empty() || !args[0].is(Kind::kString))
               throw Failure{"strftime_now() expects a format string"};
             return Value::string(strftime_now(args[0].s()));
           }));
  env->set("True", Value::from_bool(true));
  env->set("False", Value::from_bool(false));
  env->set("None", Value::null());
}

int compare_values(const Value& a, const Value& b, bool case_sensitive) {
  auto fail_types = [&] {
    throw Failure{std::string("Cannot compare ") + type_name(a) + " with " + type_name(b)};
  };
  if (a.is(Kind::kNull) && b.is(Kind::kNull)) return 0;
  if (a.is(Kind::kNull) || b.is(Kind::kNull)) fail_types();
  if (a.is(Kind::kUndefined) && b.is(Kind::kUndefined)) return 0;
  if (a.is(Kind::kUndefined) || b.is(Kind::kUndefined)) fail_types();
  auto numeric_like = [](const Value& v) { return v.is_numeric() || v.is(Kind::kBool); };
  if (numeric_like(a) && numeric_like(b)) {
    double x = a.is(Kind::kBool) ? (a.boolean ? 1 : 0) : a.number;
    double y = b.is(Kind::kBool) ? (b.boolean ? 1 : 0) : b.number;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.kind != b.kind || a.is_kwargs() != b.is_kwargs())
    throw Failure{std::string("Cannot compare different types: ") + type_name(a) + " and " +
                  type_name(b)};
  if (!a.is(Kind::kString)) throw Failure{std::string("Cannot compare type: ") + type_name(a)};
  std::u16string x = js::to_utf16(case_sensitive ? a.s() : js::to_lower(a.s()));
  std::u16string y = js::to_utf16(case_sensitive ? b.s() : js::to_lower(b.s()));
  return x < y ? -1 : x > y ? 1 : 0;
}

void stable_sort_values(std::vector<Value>& items,
                        const std::function<int(const Value&, const Value&)>& compare) {
  if (items.size() < 2) return;
  std::vector<Value> buffer(items.size());
  for (size_t width = 1; width < items.size(); width *= 2) {
    for (size_t lo = 0; lo < items.size(); lo += 2 * width) {
      size_t mid = std::min(lo + width, items.size()), hi = std::min(lo + 2 * width, items.size());
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) buffer[k++] = compare(items[j], items[i]) < 0 ? items[j++] : items[i++];
      while (i < mid) buffer[k++] = items[i++];
      while (j < hi) buffer[k++] = items[j++];
    }
    items.swap(buffer);
  }
}

Value attribute_path(const Value& item, std::string_view path) {
  Value value = item;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part(path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (value.is_attribute_container()) {
      const Value* v = value.object->find(part);
      value = v ? *v : Value::undefined();
    } else if (value.is_array()) {
      double index = js::parse_int(part);
      if (!std::isnan(index) && index >= 0 && index < static_cast<double>(value.array->items.size()))
        value = value.array->items[static_cast<size_t>(index)];
      else
        return Value::undefined();
    } else {
      return Value::undefined();
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return value;
}

std::vector<size_t> slice_indices(size_t length, const Value& start_v, const Value& stop_v,
                                  const Value& step_v) {
  double len = static_cast<double>(length);
  double step = step_v.is(Kind::kUndefined) ? 1 : step_v.number;
  double direction = step > 0 ? 1 : step < 0 ? -1 : 0;
  double start, stop;
  if (direction >= 0) {
    start = start_v.is(Kind::kUndefined) ? 0 : start_v.number;
    start = start < 0 ? std::max(len + start, 0.0) : std::min(start, len);
    stop = stop_v.is(Kind::kUndefined) ? len : stop_v.number;
    stop = stop < 0 ? std::max(len + stop, 0.0) : std::min(stop, len);
  } else {
    start = start_v.is(Kind::kUndefined) ? len - 1 : start_v.number;
    start = start < 0 ? std::max(len + start, -1.0) : std::min(start, len - 1);
    stop = stop_v.is(Kind::kUndefined) ? -1 : stop_v.number;
    stop = stop < -1 ? std::max(len + stop, -1.0) : std::min(stop, len - 1);
  }
  std::vector<size_t> out;
  if (direction == 0) return out;
  for (double i = start; direction * i < direction * stop; i += step) {
    if (i >= 0 && i < len) out.push_back(static_cast<size_t>(i));
  }
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to,
                        double count) {
  if (count == 0) return s;
  double remaining = count < 0 ? INFINITY : count;
  std::string out;
  if (from.empty()) {
    size_t i = 0;
    while (true) {
      if (remaining > 0) {
        out += to;
        --remaining;
      }
      if (i >= s.size()) break;
      size_t j = i;
      utf8_next_lossy(s, j);
      out.append(s, i, j - i);
      i = j;
      if (out.size() > kMaxStringBytes) throw Failure{"string exceeds the template size limit"};
    }
    return out;
  }
  size_t start = 0;
  while (remaining > 0) {
    size_t at = s.find(from, start);
    if (at == std::string::npos) break;
    out.append(s, start, at - start);
    out += to;
    --remaining;
    start = at + from.size();
    if (out.size() > kMaxStringBytes) throw Failure{"string exceeds the template size limit"};
  }
  out.append(s, start, std::string::npos);
  return out;
}

}  // namespace meshlm::tmpl
