// Template source -> tokens, following @huggingface/jinja's lexer with the settings transformers
// uses (trim_blocks, lstrip_blocks, one trailing newline dropped, {% generation %} tags removed).
// Every token remembers its byte offset in the original source for error messages.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace meshlm::tmpl {

enum class TokenType : uint8_t {
  kText,
  kNumericLiteral,
  kStringLiteral,
  kIdentifier,
  kEquals,
  kOpenParen,
  kCloseParen,
  kOpenStatement,
  kCloseStatement,
  kOpenExpression,
  kCloseExpression,
  kOpenSquareBracket,
  kCloseSquareBracket,
  kOpenCurlyBracket,
  kCloseCurlyBracket,
  kComma,
  kDot,
  kColon,
  kPipe,
  kAdditiveBinaryOperator,
  kMultiplicativeBinaryOperator,
  kExponentiationBinaryOperator,
  kComparisonBinaryOperator,
  kUnaryOperator,
  kComment,
};

const char* token_type_name(TokenType t);

struct Token {
  TokenType type;
  std::string value;
  uint32_t pos;  // byte offset in the original source
};

// "line L, column C" for a byte offset of `source` (both 1-based, columns in code points).
std::string describe_position(std::string_view source, uint32_t pos);

// Throws Error("template", "syntax error at line L, column C: ...").
std::vector<Token> tokenize(std::string_view source);

}  // namespace meshlm::tmpl
