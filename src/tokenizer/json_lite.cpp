#include "tokenizer/json_lite.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/utf8.h"

namespace meshlm::tok {

namespace {
constexpr int kMaxDepth = 128;

const char* type_name(JsonValue::Type t) {
  switch (t) {
    case JsonValue::Type::kNull:
      return "null";
    case JsonValue::Type::kBool:
      return "a boolean";
    case JsonValue::Type::kNumber:
      return "a number";
    case JsonValue::Type::kString:
      return "a string";
    case JsonValue::Type::kArray:
      return "an array";
    case JsonValue::Type::kObject:
      return "an object";
  }
  return "?";
}

[[noreturn]] void type_error(std::string_view what, const char* want, JsonValue::Type got) {
  throw Error("tokenizer", std::string(what) + ": expected " + want + ", got " + type_name(got));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

const JsonValue* JsonValue::find(std::string_view key) const {
  if (type != Type::kObject) return nullptr;
  // Last duplicate wins, as with serde.
  for (auto it = obj.rbegin(); it != obj.rend(); ++it)
    if (it->key == key) return &it->value;
  return nullptr;
}

const std::string& JsonValue::as_string(std::string_view what) const {
  if (type != Type::kString) type_error(what, "a string", type);
  return str;
}
bool JsonValue::as_bool(std::string_view what) const {
  if (type != Type::kBool) type_error(what, "a boolean", type);
  return boolean;
}
int64_t JsonValue::as_int(std::string_view what) const {
  if (type != Type::kNumber) type_error(what, "a number", type);
  if (!(number >= -9.0e15 && number <= 9.0e15) || std::floor(number) != number)
    throw Error("tokenizer", std::string(what) + ": not an integer");
  return static_cast<int64_t>(number);
}
const std::vector<JsonValue>& JsonValue::as_array(std::string_view what) const {
  if (type != Type::kArray) type_error(what, "an array", type);
  return arr;
}
std::string JsonValue::get_string(std::string_view key, std::string_view def) const {
  const JsonValue* v = find(key);
  if (!v || v->is_null()) return std::string(def);
  return v->as_string(key);
}
bool JsonValue::get_bool(std::string_view key, bool def) const {
  const JsonValue* v = find(key);
  if (!v || v->is_null()) return def;
  return v->as_bool(key);
}
int64_t JsonValue::get_int(std::string_view key, int64_t def) const {
  const JsonValue* v = find(key);
  if (!v || v->is_null()) return def;
  return v->as_int(key);
}

void JsonCursor::fail(std::string_view msg) const {
  throw Error("tokenizer",
              "invalid JSON at byte " + std::to_string(pos_) + ": " + std::string(msg));
}

void JsonCursor::skip_ws() {
  while (pos_ < s_.size()) {
    char c = s_[pos_];
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
      ++pos_;
    else
      break;
  }
}

char JsonCursor::peek() {
  skip_ws();
  return pos_ < s_.size() ? s_[pos_] : '\0';
}

bool JsonCursor::at_end() {
  skip_ws();
  return pos_ >= s_.size();
}

void JsonCursor::expect(char c) {
  if (peek() != c) fail(std::string("expected '") + c + "'");
  ++pos_;
}

bool JsonCursor::consume(char c) {
  if (peek() != c) return false;
  ++pos_;
  return true;
}

void JsonCursor::parse_string(std::string& out) {
  expect('"');
  out.clear();
  while (true) {
    size_t start = pos_;
    while (pos_ < s_.size()) {
      auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"' || c == '\\' || c < 0x20) break;
      ++pos_;
    }
    out.append(s_.data() + start, pos_ - start);
    if (pos_ >= s_.size()) fail("unterminated string");
    char c = s_[pos_];
    if (c == '"') {
      ++pos_;
      return;
    }
    if (c != '\\') fail("control character in string");
    if (++pos_ >= s_.size()) fail("unterminated escape");
    char e = s_[pos_++];
    switch (e) {
      case '"':
        out.push_back('"');
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '/':
        out.push_back('/');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        auto read_hex4 = [&]() -> char32_t {
          if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
          char32_t v = 0;
          for (int k = 0; k < 4; ++k) {
            int h = hex_value(s_[pos_ + k]);
            if (h < 0) fail("bad \\u escape");
            v = v * 16 + h;
          }
          pos_ += 4;
          return v;
        };
        char32_t cp = read_hex4();
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (pos_ + 2 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u')
            fail("lone leading surrogate");
          pos_ += 2;
          char32_t lo = read_hex4();
          if (lo < 0xDC00 || lo > 0xDFFF) fail("invalid low surrogate");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          fail("lone trailing surrogate");
        }
        utf8_append(out, cp);
        break;
      }
      default:
        fail("unknown escape");
    }
  }
}

void JsonCursor::parse_number(JsonValue& v) {
  size_t start = pos_;
  if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
  while (pos_ < s_.size() &&
         ((s_[pos_] >= '0' && s_[pos_] <= '9') || s_[pos_] == '.' || s_[pos_] == 'e' ||
          s_[pos_] == 'E' || s_[pos_] == '+' || s_[pos_] == '-'))
    ++pos_;
  double d = 0;
  auto [p, ec] = std::from_chars(s_.data() + start, s_.data() + pos_, d);
  if (ec != std::errc() || p != s_.data() + pos_) {
    if (ec == std::errc::result_out_of_range) fail("number out of range");
    fail("bad number");
  }
  v.type = JsonValue::Type::kNumber;
  v.number = d;
}

void JsonCursor::skip_value() {
  parse_value();
}

int64_t JsonCursor::parse_int() {
  skip_ws();
  {  // fast path: a plain non-negative integer
    size_t p = pos_;
    int64_t v = 0;
    while (p < s_.size() && p - pos_ < 15 && s_[p] >= '0' && s_[p] <= '9')
      v = v * 10 + (s_[p++] - '0');
    if (p > pos_ && (p >= s_.size() || (s_[p] != '.' && s_[p] != 'e' && s_[p] != 'E' &&
                                        !(s_[p] >= '0' && s_[p] <= '9')))) {
      pos_ = p;
      return v;
    }
  }
  JsonValue v;
  if (pos_ >= s_.size() || !(s_[pos_] == '-' || (s_[pos_] >= '0' && s_[pos_] <= '9')))
    fail("expected a number");
  parse_number(v);
  return v.as_int("number");
}

JsonValue JsonCursor::parse_value(int depth) {
  if (depth > kMaxDepth) fail("nesting too deep");
  JsonValue v;
  char c = peek();
  switch (c) {
    case '{': {
      ++pos_;
      v.type = JsonValue::Type::kObject;
      if (consume('}')) return v;
      do {
        std::string key;
        parse_string(key);
        expect(':');
        JsonValue member = parse_value(depth + 1);
        v.obj.push_back(JsonMember{std::move(key), std::move(member)});
      } while (consume(','));
      expect('}');
      return v;
    }
    case '[': {
      ++pos_;
      v.type = JsonValue::Type::kArray;
      if (consume(']')) return v;
      do {
        v.arr.push_back(parse_value(depth + 1));
      } while (consume(','));
      expect(']');
      return v;
    }
    case '"':
      v.type = JsonValue::Type::kString;
      parse_string(v.str);
      return v;
    case 't':
    case 'f':
    case 'n': {
      const char* word = c == 't' ? "true" : c == 'f' ? "false" : "null";
      size_t n = std::strlen(word);
      if (s_.substr(pos_, n) != word) fail("unexpected token");
      pos_ += n;
      if (c != 'n') {
        v.type = JsonValue::Type::kBool;
        v.boolean = c == 't';
      }
      return v;
    }
    default:
      if (c == '-' || (c >= '0' && c <= '9')) {
        parse_number(v);
        return v;
      }
      fail(c == '\0' ? "unexpected end of input" : "unexpected character");
  }
}

JsonValue parse_json(std::string_view text) {
  if (!utf8_is_valid(text)) throw Error("tokenizer", "JSON text is not valid UTF-8");
  JsonCursor cur(text);
  JsonValue v = cur.parse_value();
  if (!cur.at_end()) cur.fail("trailing characters");
  return v;
}

}  // namespace meshlm::tok
