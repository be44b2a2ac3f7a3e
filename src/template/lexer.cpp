#include "template/lexer.h"

#include <algorithm>

#include "core/error.h"
#include "core/utf8.h"
#include "template/js_string.h"

namespace meshlm::tmpl {

const char* token_type_name(TokenType t) {
  static const char* kNames[] = {
      "Text",          "NumericLiteral",     "StringLiteral",      "Identifier",
      "Equals",        "OpenParen",          "CloseParen",         "OpenStatement",
      "CloseStatement", "OpenExpression",    "CloseExpression",    "OpenSquareBracket",
      "CloseSquareBracket", "OpenCurlyBracket", "CloseCurlyBracket", "Comma",
      "Dot",           "Colon",              "Pipe",               "AdditiveBinaryOperator",
      "MultiplicativeBinaryOperator", "ExponentiationBinaryOperator",
      "ComparisonBinaryOperator", "UnaryOperator", "Comment"};
  return kNames[static_cast<int>(t)];
}

std::string describe_position(std::string_view source, uint32_t pos) {
  pos = std::min<uint32_t>(pos, static_cast<uint32_t>(source.size()));
  int line = 1, column = 1;
  for (size_t i = 0; i < pos;) {
    if (source[i] == '\n') {
      ++line;
      column = 1;
      ++i;
      continue;
    }
    utf8_next_lossy(source, i);
    ++column;
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

namespace {

// Source text after preprocessing, with the original offset of every byte.
struct Mapped {
  std::string text;
  std::vector<uint32_t> origin;  // origin.size() == text.size() + 1
  void push(char c, uint32_t o) {
    text += c;
    origin.push_back(o);
  }
  void finish(uint32_t end) { origin.push_back(end); }
};

bool is_line_terminator_at(const std::string& s, size_t i, size_t& len) {
  if (s[i] == '\n' || s[i] == '\r') {
    len = 1;
    return true;
  }
  if (i + 2 < s.size() + 0 && static_cast<unsigned char>(s[i]) == 0xE2 &&
      static_cast<unsigned char>(s[i + 1]) == 0x80 &&
      (static_cast<unsigned char>(s[i + 2]) == 0xA8 || static_cast<unsigned char>(s[i + 2]) == 0xA9)) {
    len = 3;
    return true;
  }
  return false;
}

// /^[ \t]*({[#%-])/gm -> "$1"
Mapped lstrip_blocks(const Mapped& in) {
  Mapped out;
  const std::string& s = in.text;
  bool line_start = true;
  for (size_t i = 0; i < s.size();) {
    if (line_start) {
      size_t j = i;
      while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
      if (j + 1 < s.size() && s[j] == '{' && (s[j + 1] == '#' || s[j + 1] == '%' || s[j + 1] == '-')) i = j;
      line_start = false;
      continue;
    }
    size_t len = 0;
    if (is_line_terminator_at(s, i, len)) {
      for (size_t k = 0; k < len; ++k) out.push(s[i + k], in.origin[i + k]);
      i += len;
      line_start = true;
      continue;
    }
    out.push(s[i], in.origin[i]);
    ++i;
  }
  out.finish(in.origin.back());
  return out;
}

// /([#%-]})\n/g -> "$1"
Mapped trim_blocks(const Mapped& in) {
  Mapped out;
  const std::string& s = in.text;
  for (size_t i = 0; i < s.size();) {
    if (i + 2 < s.size() && (s[i] == '#' || s[i] == '%' || s[i] == '-') && s[i + 1] == '}' &&
        s[i + 2] == '\n') {
      out.push(s[i], in.origin[i]);
      out.push(s[i + 1], in.origin[i + 1]);
      i += 3;
      continue;
    }
    out.push(s[i], in.origin[i]);
    ++i;
  }
  out.finish(in.origin.back());
  return out;
}

size_t skip_js_space(const std::string& s, size_t i) {
  while (i < s.size()) {
    size_t j = i;
    if (!js::is_space(utf8_next_lossy(s, j))) break;
    i = j;
  }
  return i;
}

// /(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs -> (lstrip ? "" : $1) + (rstrip ? "" : $4)
Mapped remove_generation_tags(const Mapped& in) {
  const std::string& s = in.text;
  if (s.find("generation") == std::string::npos) return in;
  Mapped out;
  auto copy = [&](size_t from, size_t to) {
    for (size_t k = from; k < to; ++k) out.push(s[k], in.origin[k]);
  };
  for (size_t i = 0; i < s.size();) {
    size_t tag = skip_js_space(s, i);
    size_t p = tag;
    bool match = false, lstrip = false, rstrip = false;
    size_t end = 0;
    if (s.compare(p, 2, "{%") == 0) {
      p += 2;
      if (p < s.size() && s[p] == '-') lstrip = true, ++p;
      p = skip_js_space(s, p);
      if (s.compare(p, 3, "end") == 0 && s.compare(p + 3, 10, "generation") == 0) p += 3;
      if (s.compare(p, 10, "generation") == 0) {
        p = skip_js_space(s, p + 10);
        if (p < s.size() && s[p] == '-') rstrip = true, ++p;
        if (s.compare(p, 2, "%}") == 0) {
          match = true;
          end = p + 2;
        }
      }
    }
    if (!match) {
      copy(i, tag + 1 > s.size() ? s.size() : tag + 1);
      i = std::min(tag + 1, s.size());
      continue;
    }
    size_t after = skip_js_space(s, end);
    if (!lstrip) copy(i, tag);
    if (!rstrip) copy(end, after);
    i = after;
  }
  out.finish(in.origin.back());
  return out;
}

Mapped preprocess(std::string_view source) {
  Mapped m;
  size_t n = source.size();
  if (n > 0 && source[n - 1] == '\n') --n;
  m.text.assign(source.substr(0, n));
  m.origin.resize(n + 1);
  for (size_t i = 0; i <= n; ++i) m.origin[i] = static_cast<uint32_t>(i);
  m = lstrip_blocks(m);
  m = trim_blocks(m);
  return remove_generation_tags(m);
}

bool is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }

struct Rule {
  const char* seq;
  TokenType type;
};
constexpr Rule kRules[] = {
    {"{%", TokenType::kOpenStatement},  {"%}", TokenType::kCloseStatement},
    {"{{", TokenType::kOpenExpression}, {"}}", TokenType::kCloseExpression},
    {"(", TokenType::kOpenParen},       {")", TokenType::kCloseParen},
    {"{", TokenType::kOpenCurlyBracket}, {"}", TokenType::kCloseCurlyBracket},
    {"[", TokenType::kOpenSquareBracket}, {"]", TokenType::kCloseSquareBracket},
    {",", TokenType::kComma},           {".", TokenType::kDot},
    {":", TokenType::kColon},           {"|", TokenType::kPipe},
    {"<=", TokenType::kComparisonBinaryOperator}, {">=", TokenType::kComparisonBinaryOperator},
    {"==", TokenType::kComparisonBinaryOperator}, {"!=", TokenType::kComparisonBinaryOperator},
    {"<", TokenType::kComparisonBinaryOperator},  {">", TokenType::kComparisonBinaryOperator},
    {"+", TokenType::kAdditiveBinaryOperator},    {"-", TokenType::kAdditiveBinaryOperator},
    {"~", TokenType::kAdditiveBinaryOperator},
    {"**", TokenType::kExponentiationBinaryOperator},
    {"*", TokenType::kMultiplicativeBinaryOperator},
    {"//", TokenType::kMultiplicativeBinaryOperator},
    {"/", TokenType::kMultiplicativeBinaryOperator},
    {"%", TokenType::kMultiplicativeBinaryOperator},
    {"=", TokenType::kEquals},
};

class Lexer {
 public:
  Lexer(std::string_view original, Mapped src) : original_(original), m_(std::move(src)) {}

  std::vector<Token> run() {
    const std::string& s = m_.text;
    while (pos_ < s.size()) {
      TokenType last = tokens_.empty() ? TokenType::kText : tokens_.back().type;
      if (tokens_.empty() || last == TokenType::kCloseStatement ||
          last == TokenType::kCloseExpression || last == TokenType::kComment) {
        size_t start = pos_;
        while (pos_ < s.size() &&
               !(s[pos_] == '{' && pos_ + 1 < s.size() &&
                 (s[pos_ + 1] == '%' || s[pos_ + 1] == '{' || s[pos_ + 1] == '#')))
          ++pos_;
        if (pos_ > start) {
          push(TokenType::kText, s.substr(start, pos_ - start), start);
          continue;
        }
      }
      if (starts("{#")) {
        lex_comment();
        continue;
      }
      if (starts("{%-")) {
        strip_trailing_whitespace();
        push(TokenType::kOpenStatement, "{%", pos_);
        pos_ += 3;
        continue;
      }
      if (starts("{{-")) {
        strip_trailing_whitespace();
        push(TokenType::kOpenExpression, "{{", pos_);
        curly_depth_ = 0;
        pos_ += 3;
        continue;
      }
      consume_whitespace();
      if (starts("-%}")) {
        push(TokenType::kCloseStatement, "%}", pos_);
        pos_ = skip_js_space(s, pos_ + 3);
        continue;
      }
      if (starts("-}}")) {
        push(TokenType::kCloseExpression, "}}", pos_);
        pos_ = skip_js_space(s, pos_ + 3);
        continue;
      }
      char c = s[pos_];
      if ((c == '-' || c == '+') && lex_sign(c)) continue;
      if (lex_rule()) continue;
      if (c == '\'' || c == '"') {
        size_t start = pos_++;
        std::string value = consume_string(c);
        push(TokenType::kStringLiteral, std::move(value), start);
        ++pos_;
        continue;
      }
      if (is_digit(c)) {
        size_t start = pos_;
        std::string num = consume_digits();
        bool after_dot = !tokens_.empty() && tokens_.back().type == TokenType::kDot;
        if (!after_dot && pos_ + 1 < s.size() && s[pos_] == '.' && is_digit(s[pos_ + 1])) {
          ++pos_;
          num += "." + consume_digits();
        }
        push(TokenType::kNumericLiteral, std::move(num), start);
        continue;
      }
      if (is_word(c)) {
        size_t start = pos_;
        while (true) {
          ++pos_;
          if (pos_ >= s.size()) fail("Unexpected end of input", pos_);
          if (!is_word(s[pos_])) break;
        }
        push(TokenType::kIdentifier, s.substr(start, pos_ - start), start);
        continue;
      }
      size_t at = pos_;
      std::string ch;
      utf8_append(ch, utf8_next_lossy(s, at));
      fail("Unexpected character: " + ch, pos_);
    }
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(const std::string& message, size_t at) {
    uint32_t o = m_.origin[std::min(at, m_.text.size())];
    throw Error("template",
                "syntax error at " + describe_position(original_, o) + ": " + message);
  }

  bool starts(std::string_view seq) const { return m_.text.compare(pos_, seq.size(), seq) == 0; }

  void push(TokenType type, std::string value, size_t at) {
    tokens_.push_back(Token{type, std::move(value), m_.origin[std::min(at, m_.text.size())]});
  }

  void strip_trailing_whitespace() {
    if (!tokens_.empty() && tokens_.back().type == TokenType::kText) {
      tokens_.back().value = js::trim_end(tokens_.back().value);
      if (tokens_.back().value.empty()) tokens_.pop_back();
    }
  }

  // consumeWhile(isWhitespace): throws when whitespace runs into the end of the source.
  void consume_whitespace() {
    const std::string& s = m_.text;
    while (pos_ < s.size()) {
      size_t j = pos_;
      if (!js::is_space(utf8_next_lossy(s, j))) break;
      pos_ = j;
      if (pos_ >= s.size()) fail("Unexpected end of input", pos_);
    }
  }

  std::string consume_digits() {
    const std::string& s = m_.text;
    size_t start = pos_;
    while (pos_ < s.size() && is_digit(s[pos_])) {
      ++pos_;
      if (pos_ >= s.size()) fail("Unexpected end of input", pos_);
    }
    return s.substr(start, pos_ - start);
  }

  void lex_comment() {
    const std::string& s = m_.text;
    size_t start = pos_;
    pos_ += 2;
    bool strip_before = pos_ < s.size() && s[pos_] == '-';
    if (strip_before) ++pos_;
    size_t body = pos_;
    while (!(pos_ + 1 < s.size() && s[pos_] == '#' && s[pos_ + 1] == '}')) {
      if (pos_ + 2 >= s.size()) fail("Missing end of comment tag", start);
      ++pos_;
    }
    std::string comment = s.substr(body, pos_ - body);
    bool strip_after = !comment.empty() && comment.back() == '-';
    if (strip_after) comment.pop_back();
    if (strip_before) strip_trailing_whitespace();
    push(TokenType::kComment, std::move(comment), start);
    pos_ += 2;
    if (strip_after) pos_ = skip_js_space(s, pos_);
  }

  // A '-' or '+' that is a sign (after an operator or an opening bracket) becomes a unary
  // operator or part of a numeric literal. Returns false when it is a binary operator.
  bool lex_sign(char c) {
    const std::string& s = m_.text;
    if (tokens_.empty() || tokens_.back().type == TokenType::kText)
      fail(std::string("Unexpected character: ") + c, pos_);
    switch (tokens_.back().type) {
      case TokenType::kIdentifier:
      case TokenType::kNumericLiteral:
      case TokenType::kStringLiteral:
      case TokenType::kCloseParen:
      case TokenType::kCloseSquareBracket:
        return false;
      default:
        break;
    }
    size_t start = pos_++;
    std::string num = consume_digits();
    if (!num.empty() && pos_ + 1 < s.size() && s[pos_] == '.' && is_digit(s[pos_ + 1])) {
      ++pos_;
      num += "." + consume_digits();
    }
    bool numeric = !num.empty();
    push(numeric ? TokenType::kNumericLiteral : TokenType::kUnaryOperator, std::string(1, c) + num,
         start);
    return true;
  }

  bool lex_rule() {
    for (const Rule& r : kRules) {
      std::string_view seq(r.seq);
      if (seq == "}}" && curly_depth_ > 0) continue;
      if (!starts(seq)) continue;
      push(r.type, std::string(seq), pos_);
      if (r.type == TokenType::kOpenExpression) curly_depth_ = 0;
      else if (r.type == TokenType::kOpenCurlyBracket) ++curly_depth_;
      else if (r.type == TokenType::kCloseCurlyBracket) --curly_depth_;
      pos_ += seq.size();
      return true;
    }
    return false;
  }

  std::string consume_string(char quote) {
    const std::string& s = m_.text;
    std::u16string units;  // \u escapes are UTF-16 units; pairs combine
    std::string out;
    auto flush_units = [&] {
      if (!units.empty()) out += js::from_utf16(units);
      units.clear();
    };
    while (pos_ >= s.size() || s[pos_] != quote) {
      if (pos_ >= s.size()) fail("Unexpected end of input", pos_);
      if (s[pos_] == '\\') {
        ++pos_;
        if (pos_ >= s.size()) fail("Unexpected end of input", pos_);
        char e = s[pos_++];
        if (e == 'x' || e == 'u') {
          size_t len = e == 'x' ? 2 : 4;
          std::string hex = s.substr(pos_, len);
          bool ok = hex.size() == len && std::all_of(hex.begin(), hex.end(), [](char h) {
                      return std::isxdigit(static_cast<unsigned char>(h));
                    });
          if (!ok) fail("Invalid hexadecimal escape sequence: \\" + std::string(1, e) + hex, pos_);
          units += static_cast<char16_t>(std::stoul(hex, nullptr, 16));
          pos_ += len;
          continue;
        }
        flush_units();
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'v': out += '\v'; break;
          case '\'': out += '\''; break;
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          default: fail(std::string("Unexpected escaped character: ") + e, pos_ - 1);
        }
        continue;
      }
      flush_units();
      out += s[pos_++];
      if (pos_ >= s.size()) fail("Unexpected end of input", pos_);
    }
    flush_units();
    return out;
  }

  std::string_view original_;
  Mapped m_;
  size_t pos_ = 0;
  int curly_depth_ = 0;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) {
  if (source.size() >= UINT32_MAX) throw Error("template", "template source is too large");
  return Lexer(source, preprocess(source)).run();
}

}  // namespace meshlm::tmpl
