// Lexer and parser: whitespace control, positions in error messages, syntax errors.
#include <gtest/gtest.h>

#include "core/error.h"
#include "template/chat_template.h"
#include "template/lexer.h"

namespace meshlm::tmpl {
namespace {

std::string render(const std::string& src, const nlohmann::ordered_json& ctx = nlohmann::ordered_json::object()) {
  return ChatTemplate::parse(src)->render(ctx);
}

std::string error_of(const std::string& src, const nlohmann::ordered_json& ctx = nlohmann::ordered_json::object()) {
  try {
    render(src, ctx);
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "template");
    return e.what();
  }
  ADD_FAILURE() << "no error for: " << src;
  return "";
}

TEST(TemplateLexer, TokenizesStatementsAndExpressions) {
  auto tokens = tokenize("a{{ x|f(1, 'two') }}{% if not y %}b{% endif %}");
  ASSERT_GE(tokens.size(), 10u);
  EXPECT_EQ(tokens[0].type, TokenType::kText);
  EXPECT_EQ(tokens[1].type, TokenType::kOpenExpression);
  EXPECT_EQ(tokens[2].value, "x");
  EXPECT_EQ(tokens[3].type, TokenType::kPipe);
  EXPECT_EQ(tokens[1].pos, 1u);
}

TEST(TemplateLexer, NegativeNumbersAfterOperatorsAreLiterals) {
  auto tokens = tokenize("{{ a[-1] - 2 }}");
  EXPECT_EQ(tokens[3].type, TokenType::kNumericLiteral);
  EXPECT_EQ(tokens[3].value, "-1");
  EXPECT_EQ(tokens[5].type, TokenType::kAdditiveBinaryOperator);
}

TEST(TemplateWhitespace, DashStripsBothSides) {
  EXPECT_EQ(render("a  {{- 'b' -}}  c"), "abc");
  EXPECT_EQ(render("a \n {%- if true -%} \n b \n {%- endif -%} \n c"), "abc");
  EXPECT_EQ(render("a {#- note -#} b"), "ab");
}

TEST(TemplateWhitespace, TrimAndLstripBlocks) {
  // trim_blocks removes the newline after a tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(render("x\n  {% if true %}\n    y\n  {% endif %}\nz"), "x\n    y\nz");
  // Expressions are not blocks: their indentation stays.
  EXPECT_EQ(render("  {{ 'e' }}\n"), "  e");
  // One trailing newline of the template is dropped.
  EXPECT_EQ(render("t\n"), "t");
  EXPECT_EQ(render("t\n\n"), "t\n");
}

TEST(TemplateWhitespace, GenerationTagsAreRemoved) {
  EXPECT_EQ(render("A {% generation %}B{% endgeneration %} C"), "A B C");
  EXPECT_EQ(render("A {%- generation -%} B"), "AB");
}

TEST(TemplateSyntax, ErrorsCarryLineAndColumn) {
  std::string e = error_of("line one\n{{ a $ b }}");
  EXPECT_NE(e.find("line 2, column 6"), std::string::npos) << e;
  EXPECT_NE(e.find("Unexpected character: $"), std::string::npos) << e;

  e = error_of("{% if x %}\nunclosed");
  EXPECT_NE(e.find("missing {% endif %}"), std::string::npos) << e;

  e = error_of("ok\n  {% include 'a' %}");
  EXPECT_NE(e.find("line 2, column 6"), std::string::npos) << e;
  EXPECT_NE(e.find("Unknown statement type: include"), std::string::npos) << e;
}

TEST(TemplateSyntax, PositionsSurvivePreprocessing) {
  // lstrip_blocks removed the indentation, but the column refers to the original source.
  std::string e = error_of("a\n    {% for %}");
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
}

TEST(TemplateSyntax, RejectsMalformedTemplates) {
  for (const char* src : {"{{ }}", "{{ 'unterminated }}", "{# no end", "{{ 'a\\q' }}", "{% endif %}",
                          "{% for x %}{% endfor %}", "{% set %}", "{{ a[] }}", "{{ a. }}",
                          "{% macro m(a=1, b) %}{% endmacro %}", "{{ f(a=1, 2) }}", "{% raw %}x{% endraw %}",
                          "{{ x is 5 }}", "{{ x | 'f' }}", "{% if %}{% endif %}"}) {
    SCOPED_TRACE(src);
    EXPECT_THROW(ChatTemplate::parse(src), Error);
  }
}

TEST(TemplateSyntax, DeepNestingIsAnErrorNotACrash) {
  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  EXPECT_THROW(ChatTemplate::parse(deep), Error);
  std::string chain = "{{ 1";
  for (int i = 0; i < 5000; ++i) chain += " + 1";
  EXPECT_THROW(ChatTemplate::parse(chain + " }}"), Error);
  std::string nested;
  for (int i = 0; i < 1000; ++i) nested += "{% if true %}";
  EXPECT_THROW(ChatTemplate::parse(nested), Error);
}

TEST(TemplateSyntax, DescribePosition) {
  EXPECT_EQ(describe_position("ab\ncd", 4), "line 2, column 2");
  EXPECT_EQ(describe_position("é\nx", 1), "line 1, column 2");
}

}  // namespace
}  // namespace meshlm::tmpl
