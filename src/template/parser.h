// Tokens -> syntax tree, mirroring @huggingface/jinja's recursive-descent parser (same operator
// precedence and the same accepted statements: set/endset, if/elif/else, for/else, macro, call,
// filter, break, continue). Anything else is a syntax error with its line and column.
#pragma once

#include <string_view>
#include <vector>

#include "template/ast.h"
#include "template/lexer.h"

namespace meshlm::tmpl {

inline constexpr int kMaxNodeDepth = 400;
inline constexpr int kMaxParseNesting = 150;

// The statements of the whole template. Throws Error("template", "syntax error at line L,
// column C: ...").
NodeList parse(const std::vector<Token>& tokens, std::string_view source);

}  // namespace meshlm::tmpl
