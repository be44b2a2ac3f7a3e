#include "grammar/json_schema.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>

#include "core/error.h"

namespace meshlm::grammar {
namespace {

using json = nlohmann::ordered_json;

constexpr int kMaxDepth = 64;
constexpr int64_t kMaxRepeat = 4096;  // bounded repetitions (maxItems, maxLength) beyond min
constexpr size_t kMaxRules = 200000;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Error("json_schema", what + " at " + (where.empty() ? "#" : where));
}

// Keywords with no effect on the text (annotations).
const std::set<std::string>& annotations() {
  static const std::set<std::string> k = {
      "title",    "description", "default",   "examples", "$schema",          "$id",
      "$comment", "deprecated",  "readOnly",  "writeOnly", "strict",          "$defs",
      "definitions", "discriminator", "$anchor"};
  return k;
}

const std::set<std::string>& supported() {
  static const std::set<std::string> k = {
      "type",     "properties", "required",  "additionalProperties", "items",     "prefixItems",
      "minItems", "maxItems",   "minLength", "maxLength",            "enum",      "const",
      "anyOf",    "oneOf",      "allOf",     "$ref",                 "nullable",  "minimum",
      "maximum",  "exclusiveMinimum", "exclusiveMaximum", "uniqueItems"};
  return k;
}

std::string key_path(const std::string& where, const std::string& key) {
  std::string k;
  for (char c : key) {  // JSON pointer escaping
    if (c == '~')
      k += "~0";
    else if (c == '/')
      k += "~1";
    else
      k += c;
  }
  return (where.empty() ? "#" : where) + "/" + k;
}

int64_t count_of(const json& s, const char* key, const std::string& where) {
  const json& v = s.at(key);
  if (!v.is_number_integer() || v.get<int64_t>() < 0)
    fail(where, std::string("'") + key + "' must be a non-negative integer");
  return v.get<int64_t>();
}

}  // namespace

JsonGrammar::JsonGrammar(GrammarBuilder& b) : b_(b) {}

int32_t JsonGrammar::space() {
  if (space_ < 0) space_ = b_.rule("sp", {{}, b_.literal(" ")});
  return space_;
}

// One character of a JSON string's content (a code point: raw UTF-8 or an escape).
int32_t JsonGrammar::string_char() {
  if (char_ >= 0) return char_;
  auto& b = b_;
  const int32_t cont = b.set(ByteSet::range(0x80, 0xBF));
  ByteSet ascii = ByteSet::range(0x20, 0x7F);
  ascii.w['"' >> 6] &= ~(uint64_t{1} << ('"' & 63));
  ascii.w['\\' >> 6] &= ~(uint64_t{1} << ('\\' & 63));
  ByteSet hex = ByteSet::range('0', '9');
  hex.add(ByteSet::range('a', 'f'));
  hex.add(ByteSet::range('A', 'F'));
  const int32_t h = b.set(hex);
  ByteSet not_d = ByteSet::range('0', '9');
  not_d.add(ByteSet::range('a', 'c'));
  not_d.add(ByteSet::range('A', 'C'));
  not_d.add(ByteSet::range('e', 'f'));
  not_d.add(ByteSet::range('E', 'F'));
  ByteSet d = ByteSet::of('d');
  d.add('D');
  ByteSet high = ByteSet::range('8', '9');  // D800-DBFF
  high.add(ByteSet::range('a', 'b'));
  high.add(ByteSet::range('A', 'B'));
  ByteSet low = ByteSet::range('c', 'f');  // DC00-DFFF
  low.add(ByteSet::range('C', 'F'));
  ByteSet simple;
  for (char c : std::string("\"\\/bfnrt")) simple.add(uint8_t(c));
  const int32_t u_escape = b.rule(
      "u-escape",
      {{b.set(not_d), h, h, h},
       {b.set(d), b.set(ByteSet::range('0', '7')), h, h},
       // A UTF-16 surrogate pair; a lone surrogate is refused (strict parsers reject it).
       {b.set(d), b.set(high), h, h, b.byte('\\'), b.byte('u'), b.set(d), b.set(low), h, h}});
  char_ = b.rule("char",
                 {{b.set(ascii)},
                  {b.set(ByteSet::range(0xC2, 0xDF)), cont},
                  {b.byte(0xE0), b.set(ByteSet::range(0xA0, 0xBF)), cont},
                  {b.set(ByteSet::range(0xE1, 0xEC)), cont, cont},
                  {b.byte(0xED), b.set(ByteSet::range(0x80, 0x9F)), cont},
                  {b.set(ByteSet::range(0xEE, 0xEF)), cont, cont},
                  {b.byte(0xF0), b.set(ByteSet::range(0x90, 0xBF)), cont, cont},
                  {b.set(ByteSet::range(0xF1, 0xF3)), cont, cont, cont},
                  {b.byte(0xF4), b.set(ByteSet::range(0x80, 0x8F)), cont, cont},
                  {b.byte('\\'), b.set(simple)},
                  {b.byte('\\'), b.byte('u'), u_escape}});
  return char_;
}

// item{min,max} (max < 0: unbounded), right-recursive.
int32_t JsonGrammar::repeat(int32_t item, int64_t min, int64_t max, const std::string& name) {
  const std::string key = name + "{" + std::to_string(item) + "," + std::to_string(min) + "," +
                          std::to_string(max) + "}";
  if (auto it = cache_.find(key); it != cache_.end()) return it->second;
  int32_t tail;
  if (max < 0) {
    tail = b_.declare(name + "*");
    b_.define(tail, {{item, tail}, {}});
  } else {
    tail = b_.rule(name + "{0}", {{}});
    for (int64_t k = 1; k <= max - min; ++k) tail = b_.rule(name + "?", {{item, tail}, {}});
  }
  Seq seq(size_t(min), item);
  seq.push_back(tail);
  const int32_t r = b_.rule(name + "{" + std::to_string(min) + "," +
                                (max < 0 ? std::string() : std::to_string(max)) + "}",
                            {seq});
  cache_[key] = r;
  return r;
}

// item ("," sp item){min-1, max-1}, or nothing when min == 0 (max < 0: unbounded).
int32_t JsonGrammar::repeat_sep(int32_t item, int64_t min, int64_t max, const std::string& name) {
  const int32_t more = b_.rule(name + "-more", {{b_.byte(','), space(), item}});
  const int64_t lo = std::max<int64_t>(0, min - 1);
  const int32_t rest = repeat(more, lo, max < 0 ? -1 : max - 1, name + "-rest");
  if (min > 0) return b_.rule(name + "-list", {{item, rest}});
  if (max == 0) return b_.rule(name + "-list", {{}});
  return b_.rule(name + "-list", {{item, rest}, {}});
}

int32_t JsonGrammar::digits(int min, int max) {
  return repeat(b_.set(ByteSet::range('0', '9')), min, max, "digit");
}

int32_t JsonGrammar::any_value() {
  if (value_ >= 0) return value_;
  value_ = b_.declare("value");
  const int32_t arr = b_.rule("array", {{b_.byte('['), repeat_sep(value_, 0, -1, "elements"),
                                         b_.byte(']')}});
  Seq num{};
  b_.define(value_, {{any_object()},
                     {arr},
                     {string_rule(json::object(), "")},
                     {number_rule(json::object(), "")},
                     b_.literal("true"),
                     b_.literal("false"),
                     b_.literal("null")});
  return value_;
}

int32_t JsonGrammar::any_object() {
  if (object_ >= 0) return object_;
  object_ = b_.declare("object");
  if (value_ < 0) any_value();  // defines object_ through value_
  const int32_t member = b_.rule(
      "member", {{string_rule(json::object(), ""), b_.byte(':'), space(), value_}});
  b_.define(object_, {{b_.byte('{'), repeat_sep(member, 0, -1, "members"), b_.byte('}')}});
  return object_;
}

Seq JsonGrammar::string_literal(const std::string& s) {
  return b_.literal(json(s).dump(-1, ' ', false, json::error_handler_t::strict));
}

int32_t JsonGrammar::string_rule(const json& s, const std::string& where) {
  int64_t min = s.contains("minLength") ? count_of(s, "minLength", where) : 0;
  int64_t max = s.contains("maxLength") ? count_of(s, "maxLength", where) : -1;
  if (max >= 0 && max < min) fail(where, "'maxLength' is below 'minLength'");
  if (min > kMaxRepeat || (max >= 0 && max - min > kMaxRepeat))
    fail(where, "'minLength'/'maxLength' above " + std::to_string(kMaxRepeat) +
                    " is not supported");
  if (min == 0 && max < 0 && string_ >= 0) return string_;
  const int32_t body = repeat(string_char(), min, max, "chars");
  const int32_t r = b_.rule("string", {{b_.byte('"'), body, b_.byte('"')}});
  if (min == 0 && max < 0) string_ = r;
  return r;
}

int32_t JsonGrammar::number_rule(const json& s, const std::string& where) {
  bool non_negative = false;
  for (const char* key : {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}) {
    if (!s.contains(key)) continue;
    const json& v = s.at(key);
    const bool zero_min = std::string(key) == "minimum" && v.is_number() && v.get<double>() == 0;
    if (!zero_min)
      fail(key_path(where, key), std::string("unsupported keyword '") + key +
                                     "' for type number (only \"minimum\": 0 is supported; "
                                     "integer bounds are)");
    non_negative = true;
  }
  if (!non_negative && number_ >= 0) return number_;
  const int32_t int_part =
      b_.rule("int", {b_.literal("0"), {b_.set(ByteSet::range('1', '9')), digits(0, 15)}});
  const int32_t frac = b_.rule("frac", {{b_.byte('.'), digits(1, 16)}, {}});
  ByteSet e = ByteSet::of('e');
  e.add('E');
  ByteSet sign = ByteSet::of('+');
  sign.add('-');
  const int32_t exp = b_.rule(
      "exp", {{b_.set(e), b_.rule("exp-sign", {{b_.set(sign)}, {}}), digits(1, 2)}, {}});
  int32_t r;
  if (non_negative)
    r = b_.rule("number", {{int_part, frac, exp}});
  else
    r = b_.rule("number", {{b_.byte('-'), int_part, frac, exp}, {int_part, frac, exp}});
  if (!non_negative) number_ = r;
  return r;
}

// Decimal integers of the same length between lo and hi (strings of digits, lo <= hi).
int32_t JsonGrammar::range_rule(const std::string& lo, const std::string& hi) {
  const std::string key = "range:" + lo + ":" + hi;
  if (auto it = cache_.find(key); it != cache_.end()) return it->second;
  std::vector<Seq> alts;
  if (lo.empty()) {
    alts.push_back({});
  } else if (lo[0] == hi[0]) {
    alts.push_back({b_.byte(uint8_t(lo[0])), range_rule(lo.substr(1), hi.substr(1))});
  } else {
    const size_t n = lo.size() - 1;
    const std::string nines(n, '9'), zeros(n, '0');
    alts.push_back({b_.byte(uint8_t(lo[0])), range_rule(lo.substr(1), nines)});
    if (hi[0] - lo[0] > 1)
      alts.push_back(
          {b_.set(ByteSet::range(uint8_t(lo[0] + 1), uint8_t(hi[0] - 1))), digits(int(n), int(n))});
    alts.push_back({b_.byte(uint8_t(hi[0])), range_rule(zeros, hi.substr(1))});
  }
  const int32_t r = b_.rule("range", std::move(alts));
  cache_[key] = r;
  return r;
}

int32_t JsonGrammar::uint_range(uint64_t lo, uint64_t hi) {
  std::vector<Seq> alts;
  const std::string slo = std::to_string(lo), shi = std::to_string(hi);
  for (size_t d = slo.size(); d <= shi.size(); ++d) {
    std::string a = d == slo.size() ? slo : "1" + std::string(d - 1, '0');
    if (d == 1 && d != slo.size()) a = "0";
    std::string z = d == shi.size() ? shi : std::string(d, '9');
    if (d == 1 && a == "0" && lo != 0) a = "1";
    alts.push_back({range_rule(a, z)});
  }
  return b_.rule("uint", std::move(alts));
}

int32_t JsonGrammar::integer_rule(const json& s, const std::string& where) {
  // Bounds within +-(10^16 - 1) by default (at most 16 digits, like numbers).
  constexpr double kLimit = 9999999999999999.0;
  double lo = -kLimit, hi = kLimit;
  auto bound = [&](const char* key) -> std::optional<double> {
    if (!s.contains(key)) return std::nullopt;
    const json& v = s.at(key);
    if (!v.is_number())
      fail(key_path(where, key), std::string("unsupported keyword '") + key +
                                     "' (only the numeric form is supported)");
    return v.get<double>();
  };
  if (auto v = bound("minimum")) lo = std::max(lo, std::ceil(*v));
  if (auto v = bound("exclusiveMinimum")) lo = std::max(lo, std::floor(*v) + 1);
  if (auto v = bound("maximum")) hi = std::min(hi, std::floor(*v));
  if (auto v = bound("exclusiveMaximum")) hi = std::min(hi, std::ceil(*v) - 1);
  if (lo > hi) fail(where, "the integer bounds allow no value");
  if (lo == -kLimit && hi == kLimit && integer_ >= 0) return integer_;
  std::vector<Seq> alts;
  if (hi >= 0) alts.push_back({uint_range(uint64_t(std::max(lo, 0.0)), uint64_t(hi))});
  if (lo < 0) {
    const double nlo = std::max(1.0, -hi), nhi = -lo;  // magnitudes of the negative part
    alts.push_back({b_.byte('-'), uint_range(uint64_t(nlo), uint64_t(nhi))});
  }
  const int32_t r = b_.rule("integer", std::move(alts));
  if (lo == -kLimit && hi == kLimit) integer_ = r;
  return r;
}

int32_t JsonGrammar::object_rule(const json& s, const std::string& where, int depth) {
  const json* props = s.contains("properties") ? &s.at("properties") : nullptr;
  if (props && !props->is_object()) fail(where, "'properties' must be an object");
  std::set<std::string> required;
  if (s.contains("required")) {
    const json& r = s.at("required");
    if (!r.is_array()) fail(where, "'required' must be a list");
    for (const json& k : r) {
      if (!k.is_string()) fail(where, "'required' must list strings");
      if (!props || !props->contains(k.get<std::string>()))
        fail(key_path(where, "required"), "required property '" + k.get<std::string>() +
                                              "' is not in 'properties' (not supported)");
      required.insert(k.get<std::string>());
    }
  }
  const json* extra = s.contains("additionalProperties") ? &s.at("additionalProperties") : nullptr;
  if (extra && !extra->is_boolean() && !extra->is_object())
    fail(where, "'additionalProperties' must be a boolean or a schema");
  const bool extra_schema = extra && extra->is_object();
  if ((!props || props->empty()) && !extra_schema) {
    // No listed properties: any object, or {} when additional properties are refused.
    if (extra && extra->is_boolean() && !extra->get<bool>())
      return b_.rule("empty-object", {b_.literal("{}")});
    return any_object();
  }
  if (!props || props->empty()) {
    // A map: string keys, values under additionalProperties.
    const int32_t value = compile(*extra, key_path(where, "additionalProperties"), depth + 1);
    const int32_t member =
        b_.rule("member", {{string_rule(json::object(), ""), b_.byte(':'), space(), value}});
    return b_.rule("map", {{b_.byte('{'), repeat_sep(member, 0, -1, "members"), b_.byte('}')}});
  }
  // Listed properties in order, each at most once; required ones always. Extra properties are
  // never generated (the schema allows leaving them out). first_i: properties i.. with none
  // written yet; after_i: the same once one was written (each is preceded by a comma).
  struct Prop {
    std::string name;
    int32_t kv;
    bool required;
  };
  std::vector<Prop> list;
  for (auto it = props->begin(); it != props->end(); ++it) {
    const std::string name = it.key();
    const int32_t value = compile(it.value(), key_path(key_path(where, "properties"), name),
                                  depth + 1);
    Seq kv = string_literal(name);
    kv.push_back(b_.byte(':'));
    kv.push_back(space());
    kv.push_back(value);
    list.push_back({name, b_.rule("kv-" + name, {kv}), required.count(name) > 0});
  }
  const size_t n = list.size();
  std::vector<int32_t> after(n + 1), first(n + 1);
  after[n] = b_.rule("after-end", {{}});
  first[n] = after[n];
  for (size_t i = n; i-- > 0;) {
    const Prop& p = list[i];
    std::vector<Seq> a = {{b_.byte(','), space(), p.kv, after[i + 1]}};
    if (!p.required) a.push_back({after[i + 1]});
    after[i] = b_.rule("props-after-" + p.name, std::move(a));
    std::vector<Seq> f = {{p.kv, after[i + 1]}};
    if (!p.required) f.push_back({first[i + 1]});
    first[i] = b_.rule("props-" + p.name, std::move(f));
  }
  return b_.rule("obj", {{b_.byte('{'), first[0], b_.byte('}')}});
}

int32_t JsonGrammar::array_rule(const json& s, const std::string& where, int depth) {
  const int64_t min = s.contains("minItems") ? count_of(s, "minItems", where) : 0;
  const int64_t max = s.contains("maxItems") ? count_of(s, "maxItems", where) : -1;
  if (max >= 0 && max < min) fail(where, "'maxItems' is below 'minItems'");
  if (s.contains("uniqueItems") && !(s.at("uniqueItems").is_boolean() &&
                                     !s.at("uniqueItems").get<bool>()))
    fail(key_path(where, "uniqueItems"), "unsupported keyword 'uniqueItems'");
  if (s.contains("prefixItems")) {
    const json& pre = s.at("prefixItems");
    if (!pre.is_array()) fail(where, "'prefixItems' must be a list");
    const int64_t n = int64_t(pre.size());
    if (min > n || (max >= 0 && max < n))
      fail(key_path(where, "prefixItems"),
           "'prefixItems' with 'minItems'/'maxItems' other than its length is not supported");
    // Exactly the tuple (extra items are allowed, never needed).
    Seq seq{b_.byte('[')};
    for (int64_t i = 0; i < n; ++i) {
      if (i) {
        seq.push_back(b_.byte(','));
        seq.push_back(space());
      }
      seq.push_back(compile(pre[size_t(i)], key_path(key_path(where, "prefixItems"),
                                                     std::to_string(i)),
                            depth + 1));
    }
    seq.push_back(b_.byte(']'));
    return b_.rule("tuple", {seq});
  }
  if (min > kMaxRepeat || (max >= 0 && max - min > kMaxRepeat))
    fail(where, "'minItems'/'maxItems' above " + std::to_string(kMaxRepeat) +
                    " is not supported");
  int32_t item;
  if (!s.contains("items") || s.at("items").is_boolean()) {
    if (s.contains("items") && !s.at("items").get<bool>()) {
      if (min > 0) fail(where, "'items': false with 'minItems' > 0 allows no value");
      return b_.rule("empty-array", {b_.literal("[]")});
    }
    item = any_value();
  } else if (s.at("items").is_object()) {
    item = compile(s.at("items"), key_path(where, "items"), depth + 1);
  } else {
    fail(key_path(where, "items"), "'items' as a list (use 'prefixItems') is not supported");
  }
  return b_.rule("arr", {{b_.byte('['), repeat_sep(item, min, max, "items"), b_.byte(']')}});
}

int32_t JsonGrammar::ref_rule(const std::string& ref, const std::string& where, int depth) {
  if (auto it = refs_.find(ref); it != refs_.end()) return it->second;
  if (ref.empty() || ref[0] != '#') fail(where, "'$ref' to '" + ref + "' (only local refs like "
                                                "'#/$defs/Name' are supported)");
  const json* target = nullptr;
  try {
    const json::json_pointer ptr(ref.substr(1));
    if (root_->contains(ptr)) target = &root_->at(ptr);
  } catch (const json::exception&) {
  }
  if (!target) fail(where, "'$ref' to '" + ref + "' does not resolve");
  // Declared before compiling, so recursive references resolve to the same rule.
  const int32_t r = b_.declare("ref " + ref);
  refs_[ref] = r;
  b_.define(r, {{compile(*target, ref, depth + 1)}});
  return r;
}

int32_t JsonGrammar::compile_type(const std::string& type, const json& s,
                                  const std::string& where, int depth) {
  if (type == "object") return object_rule(s, where, depth);
  if (type == "array") return array_rule(s, where, depth);
  if (type == "string") return string_rule(s, where);
  if (type == "number") return number_rule(s, where);
  if (type == "integer") return integer_rule(s, where);
  if (type == "boolean") return b_.rule("boolean", {b_.literal("true"), b_.literal("false")});
  if (type == "null") return b_.rule("null", {b_.literal("null")});
  fail(key_path(where, "type"), "unknown type '" + type + "'");
}

int32_t JsonGrammar::compile(const json& s, const std::string& where, int depth) {
  if (depth > kMaxDepth) fail(where, "schema nested deeper than " + std::to_string(kMaxDepth));
  if (b_.rule_count() > kMaxRules) fail(where, "schema too large");
  if (s.is_boolean()) {
    if (!s.get<bool>()) fail(where, "the schema 'false' allows no value");
    return any_value();
  }
  if (!s.is_object()) fail(where, "a schema must be an object or a boolean");
  for (auto it = s.begin(); it != s.end(); ++it)
    if (!annotations().count(it.key()) && !supported().count(it.key()))
      fail(key_path(where, it.key()), "unsupported JSON Schema keyword '" + it.key() + "'");

  if (s.contains("$ref")) {
    for (auto it = s.begin(); it != s.end(); ++it)
      if (it.key() != "$ref" && !annotations().count(it.key()))
        fail(key_path(where, it.key()), "keyword '" + it.key() + "' beside '$ref' is not supported");
    if (!s.at("$ref").is_string()) fail(where, "'$ref' must be a string");
    return ref_rule(s.at("$ref").get<std::string>(), key_path(where, "$ref"), depth);
  }
  const bool nullable = s.contains("nullable") && s.at("nullable").is_boolean() &&
                        s.at("nullable").get<bool>();
  std::vector<Seq> alts;
  if (s.contains("const") || s.contains("enum")) {
    std::vector<json> values;
    if (s.contains("const")) values.push_back(s.at("const"));
    if (s.contains("enum")) {
      const json& e = s.at("enum");
      if (!e.is_array() || e.empty()) fail(key_path(where, "enum"), "'enum' must be a non-empty list");
      if (s.contains("const")) fail(where, "'enum' beside 'const' is not supported");
      for (const json& v : e) values.push_back(v);
    }
    for (const json& v : values)
      alts.push_back(b_.literal(v.dump(-1, ' ', false, json::error_handler_t::strict)));
  } else if (s.contains("anyOf") || s.contains("oneOf") || s.contains("allOf")) {
    for (const char* key : {"anyOf", "oneOf", "allOf"}) {
      if (!s.contains(key)) continue;
      const json& list = s.at(key);
      if (!list.is_array() || list.empty())
        fail(key_path(where, key), std::string("'") + key + "' must be a non-empty list");
      if (std::string(key) == "allOf" && list.size() != 1)
        fail(key_path(where, key), "'allOf' with more than one schema is not supported");
      if (!alts.empty()) fail(where, "several of anyOf/oneOf/allOf in one schema are not supported");
      for (const char* other : {"type", "properties", "items", "required"})
        if (s.contains(other))
          fail(key_path(where, other), std::string("'") + other + "' beside '" + key +
                                           "' is not supported (move it into each branch)");
      for (size_t i = 0; i < list.size(); ++i)
        alts.push_back({compile(list[i], key_path(key_path(where, key), std::to_string(i)),
                                depth + 1)});
    }
  } else {
    std::vector<std::string> types;
    if (s.contains("type")) {
      const json& t = s.at("type");
      if (t.is_string()) {
        types.push_back(t.get<std::string>());
      } else if (t.is_array() && !t.empty()) {
        for (const json& x : t) {
          if (!x.is_string()) fail(key_path(where, "type"), "'type' must list strings");
          types.push_back(x.get<std::string>());
        }
      } else {
        fail(key_path(where, "type"), "'type' must be a string or a non-empty list");
      }
    } else if (s.contains("properties") || s.contains("additionalProperties") ||
               s.contains("required")) {
      types.push_back("object");
    } else if (s.contains("items") || s.contains("prefixItems") || s.contains("minItems") ||
               s.contains("maxItems")) {
      types.push_back("array");
    } else if (s.contains("minLength") || s.contains("maxLength")) {
      types.push_back("string");
    } else if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") ||
               s.contains("exclusiveMaximum")) {
      types.push_back("number");
    }
    if (types.empty()) return any_value();
    for (const std::string& t : types) alts.push_back({compile_type(t, s, where, depth)});
  }
  if (nullable) alts.push_back(b_.literal("null"));
  if (alts.size() == 1 && alts[0].size() == 1 && alts[0][0] >= 0) return alts[0][0];
  return b_.rule("schema", std::move(alts));
}

int32_t JsonGrammar::schema(const json& s, const json* root) {
  root_ = root ? root : &s;
  refs_.clear();
  return compile(s, "", 0);
}

Grammar json_object_grammar() {
  GrammarBuilder b;
  JsonGrammar j(b);
  const int32_t root = b.rule("root", {{j.any_object()}});
  return b.build(root);
}

Grammar json_schema_grammar(const json& schema) {
  GrammarBuilder b;
  JsonGrammar j(b);
  const int32_t root = b.rule("root", {{j.schema(schema)}});
  return b.build(root);
}

}  // namespace meshlm::grammar
