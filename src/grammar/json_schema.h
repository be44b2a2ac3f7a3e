// JSON Schema -> grammar of the JSON text the schema allows (structured outputs).
//
// Supported: type (a name or a list, e.g. ["string", "null"]), object properties / required /
// additionalProperties (false, true or a schema), array items / prefixItems / minItems /
// maxItems, string minLength / maxLength, integer minimum / maximum (and the exclusive forms),
// number minimum 0 / exclusiveMinimum 0 (non-negative), enum, const, anyOf, oneOf, allOf with one
// member, $ref to "#", "#/$defs/..." and "#/definitions/..." (recursion included), nullable.
// Annotations (title, description, default, examples, $schema, $id, $comment, deprecated,
// readOnly, writeOnly, strict) are ignored. Any other keyword is an error that names it and where
// it is, so a schema is never silently left unconstrained.
//
// The generated text is compact JSON: no whitespace except at most one space after ':' and ',';
// object properties come in the schema's order, each once (optional ones may be left out); numbers
// have at most 16 integer digits, 16 fraction digits and 2 exponent digits (finite as a double).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "grammar/grammar.h"

namespace meshlm::grammar {

// Schemas are read with their keys in the client's order (properties are generated in it).
using Json = nlohmann::ordered_json;

class JsonGrammar {
 public:
  explicit JsonGrammar(GrammarBuilder& b);

  // A rule for the JSON text of a value valid under `schema`; `$ref`s resolve against `root`
  // (the schema itself when null). Throws Error("json_schema", ...) naming what it cannot do.
  int32_t schema(const Json& schema, const Json* root = nullptr);
  int32_t any_value();
  int32_t any_object();
  // Elements of a JSON string literal with exactly this content.
  Seq string_literal(const std::string& s);
  int32_t space();  // "" | " "

 private:
  int32_t compile(const Json& s, const std::string& where, int depth);
  int32_t compile_type(const std::string& type, const Json& s, const std::string& where,
                       int depth);
  int32_t object_rule(const Json& s, const std::string& where, int depth);
  int32_t array_rule(const Json& s, const std::string& where, int depth);
  int32_t string_rule(const Json& s, const std::string& where);
  int32_t integer_rule(const Json& s, const std::string& where);
  int32_t number_rule(const Json& s, const std::string& where);
  int32_t ref_rule(const std::string& ref, const std::string& where, int depth);
  int32_t string_char();
  int32_t digits(int min, int max);  // [0-9]{min,max}
  int32_t repeat(int32_t item, int64_t min, int64_t max, const std::string& name);
  int32_t repeat_sep(int32_t item, int64_t min, int64_t max, const std::string& name);
  int32_t uint_range(uint64_t lo, uint64_t hi);  // decimal integers in [lo, hi], no sign
  int32_t range_rule(const std::string& lo, const std::string& hi);

  GrammarBuilder& b_;
  const Json* root_ = nullptr;
  std::map<std::string, int32_t> refs_;
  std::map<std::string, int32_t> cache_;  // shared helper rules by name
  int32_t value_ = -1, object_ = -1, string_ = -1, char_ = -1, number_ = -1, integer_ = -1,
          space_ = -1;
};

// The whole grammar for a response_format: a JSON object of any content (json_object) or a value
// valid under a schema (json_schema). Throws Error("json_schema", ...).
Grammar json_object_grammar();
Grammar json_schema_grammar(const Json& schema);

}  // namespace meshlm::grammar
