// The grammar library: JSON Schema compiler (accepts / rejects, names unsupported keywords), the
// byte-level automaton (valid documents accepted, invalid ones refused at the right byte), and the
// token masks (equal to checking every token on its own; random walks give valid JSON).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "tokenizer/tokenizer.h"

using namespace meshlm;
using namespace meshlm::grammar;
using json = nlohmann::ordered_json;

namespace {

std::shared_ptr<Automaton> automaton_for(const json& schema) {
  return std::make_shared<Automaton>(json_schema_grammar(schema));
}

// Whether the automaton accepts `text` as a whole sentence.
bool matches(Automaton& a, std::string_view text) {
  int32_t s = a.advance(a.start(), text);
  return s >= 0 && a.accepting(s);
}

// Length of the longest prefix the automaton accepts as a prefix.
size_t valid_prefix(Automaton& a, std::string_view text) {
  int32_t s = a.start();
  for (size_t i = 0; i < text.size(); ++i) {
    s = a.next(s, uint8_t(text[i]));
    if (s < 0) return i;
  }
  return text.size();
}

std::string compile_error(const json& schema) {
  try {
    json_schema_grammar(schema);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(JsonGrammar, AnyObjectAcceptsValidDocuments) {
  Automaton a(json_object_grammar());
  for (const char* doc : {
           R"({})",
           R"({"a":1})",
           R"({"a": 1, "b": [1, 2, {"c": null}], "d": {"e": true, "f": false}})",
           R"({"s":"quote \" backslash \\ slash \/ \b\f\n\r\t"})",
           R"({"u":"\u00e9\u00E9 é ü 中文 😀 \ud83d\ude00"})",
           R"({"n":[-0.5e+3, 0, -0, 1.25, 1E5, 3e-2, 123456789, 0.000001]})",
           R"({"empty":[],"o":{},"nested":[[[]],[{}]]})",
           R"({"k":"v","k2":"v2"})",
       })
    EXPECT_TRUE(matches(a, doc)) << doc;
}

TEST(JsonGrammar, AnyObjectRefusesInvalidDocumentsAtTheRightByte) {
  Automaton a(json_object_grammar());
  struct Case {
    const char* doc;
    size_t refused_at;  // index of the first byte refused (strlen: incomplete only)
  };
  const Case cases[] = {
      {R"([1])", 0},             // not an object
      {R"( {})", 0},             // leading whitespace
      {R"({"a":01})", 6},        // leading zero
      {R"({"a":1,})", 7},        // trailing comma
      {R"({'a':1})", 1},         // single quotes
      {R"({"a" :1})", 4},        // space before colon
      {R"({"a":  1})", 6},       // two spaces
      {R"({"a":"\x"})", 7},      // bad escape
      {R"({"a":"\u12G4"})", 10},  // bad hex
      {R"({"a":tru})", 8},       // bad literal
      {R"({"a":1.})", 7},        // fraction without digits
      {R"({"a":1e})", 7},        // exponent without digits
      {R"({"a":-})", 6},         // lone minus
      {"{\"a\":\"\x01\"}", 6},   // control character in a string
      {"{\"a\":\"\xC0\xAF\"}", 6},  // overlong UTF-8
      {"{\"a\":\"\xED\xA0\x80\"}", 7},  // UTF-8 surrogate
      {R"({"a":"\ud800"})", 12},  // lone surrogate escape
      {R"({"a":1}})", 7},        // trailing byte after the object
      {R"({"a":1)", 6},          // incomplete
      {R"({"a")", 4},            // incomplete
  };
  for (const Case& c : cases) {
    const std::string doc = c.doc;
    EXPECT_FALSE(matches(a, doc)) << doc;
    EXPECT_EQ(valid_prefix(a, doc), c.refused_at) << doc;
  }
}

TEST(JsonGrammar, SchemaObjectsInOrderWithRequiredAndOptional) {
  auto a = automaton_for(json::parse(R"({
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                   "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
    "required": ["name"], "additionalProperties": false})"));
  EXPECT_TRUE(matches(*a, R"({"name":"x"})"));
  EXPECT_TRUE(matches(*a, R"({"name": "x", "age": 3})"));
  EXPECT_TRUE(matches(*a, R"({"name":"x","tags":["a","b"]})"));
  EXPECT_TRUE(matches(*a, R"({"name":"x","age":-12,"tags":[]})"));
  EXPECT_FALSE(matches(*a, R"({"age":3})"));                      // name required
  EXPECT_FALSE(matches(*a, R"({"age":3,"name":"x"})"));           // order
  EXPECT_FALSE(matches(*a, R"({"name":"x","age":3.5})"));         // integer
  EXPECT_FALSE(matches(*a, R"({"name":"x","tags":["a","b","c"]})"));  // maxItems
  EXPECT_FALSE(matches(*a, R"({"name":"x","other":1})"));         // not listed
  EXPECT_FALSE(matches(*a, R"({"name":1})"));
  EXPECT_FALSE(matches(*a, R"({"name":"x",})"));
}

TEST(JsonGrammar, SchemaKeywords) {
  auto e = automaton_for(json::parse(R"({"enum": ["red", "green", 3, null, {"a": [1]}]})"));
  EXPECT_TRUE(matches(*e, R"("red")"));
  EXPECT_TRUE(matches(*e, "3"));
  EXPECT_TRUE(matches(*e, "null"));
  EXPECT_TRUE(matches(*e, R"({"a":[1]})"));
  EXPECT_FALSE(matches(*e, R"("blue")"));
  EXPECT_FALSE(matches(*e, R"("re")"));

  auto c = automaton_for(json::parse(R"({"const": "é\"x"})"));
  EXPECT_TRUE(matches(*c, "\"é\\\"x\""));

  auto n = automaton_for(json::parse(R"({"type": ["string", "null"]})"));
  EXPECT_TRUE(matches(*n, "null"));
  EXPECT_TRUE(matches(*n, R"("s")"));
  EXPECT_FALSE(matches(*n, "1"));

  auto any = automaton_for(json::parse(R"({"anyOf": [{"type": "integer"}, {"type": "object",
      "properties": {"k": {"type": "boolean"}}, "required": ["k"]}]})"));
  EXPECT_TRUE(matches(*any, "42"));
  EXPECT_TRUE(matches(*any, R"({"k":true})"));
  EXPECT_FALSE(matches(*any, R"({"k":1})"));

  auto len = automaton_for(json::parse(R"({"type": "string", "minLength": 2, "maxLength": 3})"));
  EXPECT_FALSE(matches(*len, R"("a")"));
  EXPECT_TRUE(matches(*len, R"("ab")"));
  EXPECT_TRUE(matches(*len, R"("a\u00e9c")"));  // an escape is one character
  EXPECT_TRUE(matches(*len, "\"a😀c\""));       // so is a 4-byte character
  EXPECT_FALSE(matches(*len, R"("abcd")"));

  auto items = automaton_for(json::parse(R"({"type": "array", "items": {"type": "number"},
      "minItems": 1, "maxItems": 3})"));
  EXPECT_FALSE(matches(*items, "[]"));
  EXPECT_TRUE(matches(*items, "[1]"));
  EXPECT_TRUE(matches(*items, "[1, -0.5e+3, 2]"));
  EXPECT_FALSE(matches(*items, "[1,2,3,4]"));

  auto tuple = automaton_for(json::parse(R"({"type": "array", "prefixItems": [{"type": "string"},
      {"type": "boolean"}]})"));
  EXPECT_TRUE(matches(*tuple, R"(["a",true])"));
  EXPECT_FALSE(matches(*tuple, R"([true,"a"])"));

  auto range = automaton_for(json::parse(R"({"type": "integer", "minimum": -15, "maximum": 120})"));
  for (int v = -40; v <= 200; ++v)
    EXPECT_EQ(matches(*range, std::to_string(v)), v >= -15 && v <= 120) << v;
  EXPECT_FALSE(matches(*range, "-0"));
  EXPECT_FALSE(matches(*range, "007"));
  auto safe = automaton_for(json::parse(
      R"({"type": "integer", "minimum": -9007199254740991, "maximum": 9007199254740991})"));
  EXPECT_TRUE(matches(*safe, "9007199254740991"));
  EXPECT_FALSE(matches(*safe, "9007199254740992"));
  EXPECT_TRUE(matches(*safe, "-9007199254740991"));
  EXPECT_TRUE(matches(*safe, "0"));

  auto map = automaton_for(json::parse(R"({"type": "object", "additionalProperties":
      {"type": "integer"}})"));
  EXPECT_TRUE(matches(*map, R"({"a":1,"b":2})"));
  EXPECT_FALSE(matches(*map, R"({"a":"x"})"));
  EXPECT_TRUE(matches(*automaton_for(json::parse(R"({"type":"object","additionalProperties":false})")), "{}"));
}

TEST(JsonGrammar, RefsIncludingRecursion) {
  auto a = automaton_for(json::parse(R"({
    "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"},
                        "y": {"type": "number"}}, "required": ["x", "y"]}},
    "type": "object",
    "properties": {"a": {"$ref": "#/$defs/point"}, "b": {"$ref": "#/definitions/tag"}},
    "definitions": {"tag": {"enum": ["p", "q"]}},
    "required": ["a", "b"]})"));
  EXPECT_TRUE(matches(*a, R"({"a":{"x":1,"y":2},"b":"q"})"));
  EXPECT_FALSE(matches(*a, R"({"a":{"x":1},"b":"q"})"));

  auto tree = automaton_for(json::parse(R"({
    "$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
      "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["v", "kids"]}},
    "$ref": "#/$defs/node"})"));
  EXPECT_TRUE(matches(*tree, R"({"v":1,"kids":[{"v":2,"kids":[]},{"v":3,"kids":[{"v":4,"kids":[]}]}]})"));
  EXPECT_FALSE(matches(*tree, R"({"v":1,"kids":[{"v":2}]})"));
}

TEST(JsonGrammar, UnsupportedKeywordsAreNamed) {
  struct Case {
    const char* schema;
    const char* names;
  };
  const Case cases[] = {
      {R"({"type": "string", "pattern": "^a+$"})", "'pattern'"},
      {R"({"type": "string", "format": "email"})", "'format'"},
      {R"({"type": "object", "properties": {"x": {"type": "number", "multipleOf": 2}}})",
       "'multipleOf' at #/properties/x/multipleOf"},
      {R"({"type": "number", "maximum": 3})", "'maximum'"},
      {R"({"type": "object", "patternProperties": {"a": {}}})", "'patternProperties'"},
      {R"({"not": {"type": "string"}})", "'not'"},
      {R"({"type": "array", "uniqueItems": true})", "'uniqueItems'"},
      {R"({"allOf": [{"type": "string"}, {"maxLength": 3}]})", "'allOf'"},
      {R"({"$ref": "https://example.com/s.json"})", "'$ref'"},
      {R"({"$ref": "#/$defs/missing"})", "does not resolve"},
      {R"({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"})",
       "refers to itself"},
      {R"({"type": "strin"})", "unknown type 'strin'"},
      {R"({"type": "object", "required": ["x"]})", "'x'"},
      {R"(false)", "allows no value"},
      {R"({"type": "string", "maxLength": 100000})", "maxLength"},
  };
  for (const Case& c : cases) {
    const std::string err = compile_error(json::parse(c.schema));
    EXPECT_NE(err.find(c.names), std::string::npos) << c.schema << " -> " << err;
  }
  // Annotations are fine.
  EXPECT_EQ(compile_error(json::parse(R"({"$schema": "http://json-schema.org/draft-07/schema#",
      "title": "t", "description": "d", "type": "object", "properties": {"a": {"type": "string",
      "description": "x", "default": "y"}}, "required": ["a"], "additionalProperties": false})")),
            "");
}

// ---- token masks ----

namespace {

// The allowed tokens by brute force: every token's bytes advanced on its own.
std::vector<int32_t> brute_force(Automaton& a, const Vocabulary& v, int32_t state) {
  std::vector<int32_t> out;
  for (int32_t id = 0; id < int32_t(v.n_ids()); ++id) {
    if (v.is_eos(id)) {
      if (a.accepting(state)) out.push_back(id);
      continue;
    }
    const std::string& b = v.bytes(id);
    if (!b.empty() && a.advance(state, b) >= 0) out.push_back(id);
  }
  return out;
}

std::vector<int32_t> ids_of(const MaskWords& m) {
  std::vector<int32_t> out;
  for (size_t i = 0; i < m.size() * 64; ++i)
    if ((m[i / 64] >> (i % 64)) & 1) out.push_back(int32_t(i));
  return out;
}

std::shared_ptr<Vocabulary> toy_vocab() {
  std::vector<std::string> t = {"{", "}", "\"", "a", "\"a\"", ":", " ", ",", "1", "-", "{\"",
                                "\":", "[", "]", "true", "tr", "ue", "null", "\\", "u", "00e9",
                                "é", "\xC3", "\xA9", ".", "5", "e+", "0", "\"}", "\n", "", "xyz", "b", "c", "e"};
  // id 30 is empty (a special token), id 35 is EOS
  t.push_back("");
  return std::make_shared<Vocabulary>(t, std::vector<int32_t>{35}, 40);
}

}  // namespace

TEST(TokenMask, EqualsBruteForceAndWalksToValidJson) {
  auto vocab = toy_vocab();
  const json schema = json::parse(R"({"type": "object", "properties": {
      "a": {"type": "array", "items": {"type": "number"}, "maxItems": 3},
      "b": {"type": ["string", "null"], "maxLength": 6}, "c": {"enum": [true, "é"]}},
      "required": ["a", "b", "c"], "additionalProperties": false})");
  auto a = automaton_for(schema);
  std::mt19937 rng(7);
  int complete = 0;
  for (int walk = 0; walk < 300; ++walk) {
    Matcher m(a, vocab);
    std::string text;
    for (int step = 0; step < 200 && !m.finished(); ++step) {
      auto mask = m.mask();
      auto ids = ids_of(*mask);
      ASSERT_EQ(ids, brute_force(*a, *vocab, m.state())) << text;
      ASSERT_FALSE(ids.empty()) << text;
      const int32_t pick = ids[rng() % ids.size()];
      ASSERT_TRUE(m.accept(pick));
      if (!vocab->is_eos(pick)) text += vocab->bytes(pick);
    }
    if (!m.finished()) continue;
    ++complete;
    json doc = json::parse(text);  // throws when not JSON
    ASSERT_TRUE(doc.is_object()) << text;
    ASSERT_TRUE(doc["a"].is_array() && doc["a"].size() <= 3) << text;
    ASSERT_TRUE(doc["b"].is_null() || (doc["b"].is_string())) << text;
    ASSERT_TRUE(doc["c"] == true || doc["c"] == "é") << text;
  }
  EXPECT_GT(complete, 100);
}

TEST(TokenMask, EosOnlyWhenComplete) {
  auto vocab = toy_vocab();
  auto a = automaton_for(json::parse(R"({"const": true})"));
  Matcher m(a, vocab);
  EXPECT_FALSE(m.accept(35));
  EXPECT_TRUE(m.accept(14));  // "true"
  EXPECT_EQ(ids_of(*m.mask()), std::vector<int32_t>{35});
  EXPECT_FALSE(m.accept(3));
  EXPECT_TRUE(m.accept(35));
  EXPECT_TRUE(m.finished());
}

TEST(TokenMask, RealQwen3VocabularyMatchesBruteForce) {
  const std::string dir = MESHLM_QWEN3_TOKENIZER_DIR;
  if (!std::filesystem::exists(dir + "/tokenizer.json")) GTEST_SKIP() << "no " << dir;
  auto tok = tok::Tokenizer::load_from_dir(dir);
  std::vector<std::string> bytes(tok->vocab_size());
  for (size_t i = 0; i < bytes.size(); ++i)
    if (!tok->is_special(int32_t(i))) bytes[i] = tok->token_bytes(int32_t(i));
  // Byte-level: token bytes concatenate to the decoded text.
  auto ids = tok->encode("{\"名前\": \"é😀\", \"n\": -0.5e+3}", false);
  std::string joined;
  for (auto id : ids) joined += tok->token_bytes(id);
  EXPECT_EQ(joined, tok->decode(ids, false));
  auto vocab = std::make_shared<Vocabulary>(bytes, std::vector<int32_t>{*tok->token_to_id("<|im_end|>")},
                                            151936);
  auto a = automaton_for(json::parse(R"({"type": "object", "properties": {"name": {"type":
      "string"}, "n": {"type": "number"}, "ok": {"type": "boolean"}}, "required": ["name", "n", "ok"]})"));
  Matcher m(a, vocab);
  for (std::string piece : {std::string(""), std::string("{\"name\": \""), std::string("ab\\\\"),
                            std::string("c\", \"n\": -0."), std::string("5e+3, \"ok\": true}")}) {
    ASSERT_TRUE(m.accept_bytes(piece)) << piece;
    auto mask = m.mask();
    ASSERT_EQ(ids_of(*mask), brute_force(*a, *vocab, m.state())) << piece;
  }
  EXPECT_TRUE(m.complete());

  // Counted strings (each position its own state; the plain-token shortcut with a finite run),
  // an enum literal (no shortcut), and escapes.
  auto b = automaton_for(json::parse(R"({"type": "object", "properties": {"s": {"type": "string",
      "maxLength": 5}, "e": {"enum": ["abc", "abd", "a\"b"]}, "t": {"type": "string", "minLength": 2}},
      "required": ["s", "e", "t"]})"));
  Matcher m2(b, vocab);
  for (std::string piece : {std::string("{\"s\": \""), std::string("ab"), std::string("c\\n"),
                            std::string("é"), std::string("\", \"e\": \"a"), std::string("b"),
                            std::string("d\", \"t\": \""), std::string("x"),
                            std::string("yz\"}")}) {
    ASSERT_TRUE(m2.accept_bytes(piece)) << piece;
    ASSERT_EQ(ids_of(*m2.mask()), brute_force(*b, *vocab, m2.state())) << piece;
  }
  EXPECT_TRUE(m2.complete());
}
