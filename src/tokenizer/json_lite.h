// A small, fast JSON reader for tokenizer.json. The loader walks the big arrays (vocab, merges)
// with the cursor directly, and builds a JsonValue tree only for the small sections.
// Every error throws meshlm::Error("tokenizer", ...) with the byte offset; nesting is bounded.
//
// Why not a library (issue 13; BENCHMARKS.md, "json_lite vs nlohmann/simdjson", bench/
// tokenizer_json_bench.cpp): on real files (qwen3 11 MB, llama3 9 MB, gemma3 33 MB; CPU ms, AMD
// EPYC 2.1 GHz) the whole Tokenizer load takes 68 / 114 / 251 ms, of which this cursor's parsing is
// 17 / 13 / 44 ms. nlohmann::json::parse alone takes 231 / 250 / 877 ms: a load on nlohmann would
// be 3-4x slower. simdjson (Debian 3.0.1) parses in 4.5 / 3.4 / 16 ms, so it could make the load at
// most ~1.1-1.2x faster, but it rejects integers beyond 64 bits, which real tokenizer_config.json
// files hold ("model_max_length": 1000000000000000019884624838656 in llama2/llama3).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace meshlm::tok {

struct JsonMember;

struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string str;
  std::vector<JsonValue> arr;
  std::vector<JsonMember> obj;

  bool is_null() const { return type == Type::kNull; }
  bool is_string() const { return type == Type::kString; }
  bool is_object() const { return type == Type::kObject; }
  bool is_array() const { return type == Type::kArray; }
  // Member lookup (nullptr when absent or when this is not an object).
  const JsonValue* find(std::string_view key) const;
  // Typed accessors that throw a clear error naming `what` on a type mismatch.
  const std::string& as_string(std::string_view what) const;
  bool as_bool(std::string_view what) const;
  int64_t as_int(std::string_view what) const;
  const std::vector<JsonValue>& as_array(std::string_view what) const;
  // Optional members with defaults; a present member of the wrong type throws.
  std::string get_string(std::string_view key, std::string_view def) const;
  bool get_bool(std::string_view key, bool def) const;
  int64_t get_int(std::string_view key, int64_t def) const;
};

struct JsonMember {
  std::string key;
  JsonValue value;
};

class JsonCursor {
 public:
  explicit JsonCursor(std::string_view text) : s_(text) {}
  void skip_ws();
  char peek();  // next non-space character, '\0' at end
  void expect(char c);
  bool consume(char c);  // skips c (after spaces) when it is next
  void parse_string(std::string& out);
  JsonValue parse_value(int depth = 0);
  void skip_value();
  int64_t parse_int();
  bool at_end();
  [[noreturn]] void fail(std::string_view msg) const;

 private:
  void parse_number(JsonValue& v);
  std::string_view s_;
  size_t pos_ = 0;
};

JsonValue parse_json(std::string_view text);

}  // namespace meshlm::tok
