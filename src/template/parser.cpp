#include "template/parser.h"

#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <set>

#include "core/error.h"

namespace meshlm::tmpl {
namespace {

using T = TokenType;

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, std::string_view source)
      : tokens_(tokens), source_(source) {}

  NodeList run() {
    NodeList program;
    while (current_ < tokens_.size()) program.push_back(parse_any());
    return program;
  }

 private:
  // ---- helpers ------------------------------------------------------------------------------

  [[noreturn]] void fail(const std::string& message) const {
    uint32_t pos = current_ < tokens_.size() ? tokens_[current_].pos
                   : tokens_.empty()         ? 0
                                             : static_cast<uint32_t>(source_.size());
    throw Error("template", "syntax error at " + describe_position(source_, pos) + ": " + message);
  }
  [[noreturn]] void fail_at(uint32_t pos, const std::string& message) const {
    throw Error("template", "syntax error at " + describe_position(source_, pos) + ": " + message);
  }

  struct NestingGuard {
    explicit NestingGuard(Parser* p) : p(p) {
      if (++p->nesting_ > kMaxParseNesting) p->fail("template is nested too deeply");
    }
    ~NestingGuard() { --p->nesting_; }
    Parser* p;
  };

  bool at_end() const { return current_ >= tokens_.size(); }

  bool is(std::initializer_list<T> types) const {
    if (current_ + types.size() > tokens_.size()) return false;
    size_t i = current_;
    for (T t : types)
      if (tokens_[i++].type != t) return false;
    return true;
  }
  bool is(T t) const { return is({t}); }

  bool is_identifier(std::initializer_list<const char*> names) const {
    if (current_ + names.size() > tokens_.size()) return false;
    size_t i = current_;
    for (const char* n : names) {
      const Token& tok = tokens_[i++];
      if (tok.type != T::kIdentifier || tok.value != n) return false;
    }
    return true;
  }
  bool is_identifier(const char* name) const { return is_identifier({name}); }

  bool is_statement(std::initializer_list<const char*> names) const {
    if (current_ + 1 >= tokens_.size()) return false;
    if (tokens_[current_].type != T::kOpenStatement || tokens_[current_ + 1].type != T::kIdentifier)
      return false;
    const std::string& v = tokens_[current_ + 1].value;
    return std::any_of(names.begin(), names.end(), [&](const char* n) { return v == n; });
  }

  const Token& expect(T type, const std::string& what) {
    if (at_end()) fail("unexpected end of template: " + what);
    const Token& tok = tokens_[current_];
    if (tok.type != type) {
      fail(what + " (got " + token_type_name(tok.type) + " '" + tok.value + "')");
    }
    ++current_;
    return tok;
  }

  void expect_identifier(const char* name) {
    if (!is_identifier(name)) fail(std::string("Expected ") + name);
    ++current_;
  }

  // Statements up to (not including) one of the `{% name %}` tags.
  NodeList parse_until(std::initializer_list<const char*> names, const char* missing) {
    NodeList body;
    while (!is_statement(names)) {
      if (at_end()) fail(std::string("unexpected end of template: missing ") + missing);
      body.push_back(parse_any());
    }
    return body;
  }

  NodePtr make(NodeType type, uint32_t pos) {
    auto n = std::make_unique<Node>();
    n->type = type;
    n->pos = pos;
    return n;
  }

  // Computes the subtree height; refuses trees too deep to evaluate safely.
  NodePtr finish(NodePtr n) {
    int d = 0;
    auto see = [&](const NodePtr& k) {
      if (k) d = std::max(d, k->depth);
    };
    see(n->a), see(n->b), see(n->c);
    for (auto* list : {&n->list, &n->body, &n->alt})
      for (const auto& k : *list) see(k);
    for (const auto& [k, v] : n->pairs) see(k), see(v);
    n->depth = d + 1;
    if (n->depth > kMaxNodeDepth) fail_at(n->pos, "expression is nested too deeply");
    return n;
  }

  uint32_t pos() const { return at_end() ? static_cast<uint32_t>(source_.size()) : tokens_[current_].pos; }

  // ---- statements ---------------------------------------------------------------------------

  NodePtr parse_any() {
    NestingGuard guard(this);
    if (at_end()) fail("unexpected end of template");
    const Token& tok = tokens_[current_];
    switch (tok.type) {
      case T::kComment: {
        auto n = make(NodeType::kComment, tok.pos);
        n->text = tok.value;
        ++current_;
        return finish(std::move(n));
      }
      case T::kText: {
        auto n = make(NodeType::kText, tok.pos);
        n->text = tok.value;
        ++current_;
        return finish(std::move(n));
      }
      case T::kOpenStatement: return parse_statement();
      case T::kOpenExpression: {
        ++current_;
        NodePtr e = parse_expression();
        expect(T::kCloseExpression, "Expected closing expression token '}}'");
        return e;
      }
      default: fail(std::string("Unexpected token type: ") + token_type_name(tok.type));
    }
  }

  NodePtr parse_statement() {
    uint32_t start = pos();
    expect(T::kOpenStatement, "Expected opening statement token");
    if (at_end()) fail("unexpected end of template in statement");
    if (tokens_[current_].type != T::kIdentifier)
      fail(std::string("Unknown statement, got ") + token_type_name(tokens_[current_].type));
    std::string name = tokens_[current_].value;
    NodePtr result;
    if (name == "set") {
      ++current_;
      result = parse_set(start);
    } else if (name == "if") {
      ++current_;
      result = parse_if(start);
      expect_end("endif");
    } else if (name == "macro") {
      ++current_;
      result = parse_macro(start);
      expect_end("endmacro");
    } else if (name == "for") {
      ++current_;
      result = parse_for(start);
      expect_end("endfor");
    } else if (name == "call") {
      ++current_;
      auto n = make(NodeType::kCallStatement, start);
      if (is(T::kOpenParen)) n->list = parse_args(false);
      uint32_t callee_pos = pos();
      NodePtr callee = parse_primary();
      if (callee->type != NodeType::kIdentifier)
        fail_at(callee_pos, "Expected identifier following call statement");
      auto call = make(NodeType::kCall, callee_pos);
      call->a = std::move(callee);
      call->list = parse_args(true);
      n->a = finish(std::move(call));
      expect(T::kCloseStatement, "Expected closing statement token '%}'");
      n->body = parse_until({"endcall"}, "{% endcall %}");
      expect_end("endcall");
      result = std::move(n);
    } else if (name == "break" || name == "continue") {
      ++current_;
      expect(T::kCloseStatement, "Expected closing statement token '%}'");
      result = make(name == "break" ? NodeType::kBreak : NodeType::kContinue, start);
    } else if (name == "filter") {
      ++current_;
      auto n = make(NodeType::kFilterStatement, start);
      NodePtr filter = parse_primary();
      if (filter->type == NodeType::kIdentifier && is(T::kOpenParen))
        filter = parse_call(std::move(filter));
      n->a = std::move(filter);
      expect(T::kCloseStatement, "Expected closing statement token '%}'");
      n->body = parse_until({"endfilter"}, "{% endfilter %}");
      expect_end("endfilter");
      result = std::move(n);
    } else {
      fail("Unknown statement type: " + name);
    }
    return finish(std::move(result));
  }

  void expect_end(const char* name) {
    expect(T::kOpenStatement, std::string("Expected {% ") + name + " %}");
    expect_identifier(name);
    expect(T::kCloseStatement, "Expected closing statement token '%}'");
  }

  NodePtr parse_set(uint32_t start) {
    auto n = make(NodeType::kSet, start);
    n->a = parse_expression_sequence(false);
    if (is(T::kEquals)) {
      ++current_;
      n->b = parse_expression_sequence(false);
    } else {
      expect(T::kCloseStatement, "Expected '=' or '%}' in set statement");
      n->body = parse_until({"endset"}, "{% endset %}");
      expect(T::kOpenStatement, "Expected {% endset %}");
      expect_identifier("endset");
    }
    expect(T::kCloseStatement, "Expected closing statement token '%}'");
    return n;
  }

  NodePtr parse_if(uint32_t start) {
    NestingGuard guard(this);
    auto n = make(NodeType::kIf, start);
    n->a = parse_expression();
    expect(T::kCloseStatement, "Expected closing statement token '%}'");
    n->body = parse_until({"elif", "else", "endif"}, "{% endif %}");
    if (is_statement({"elif"})) {
      uint32_t elif_pos = pos();
      current_ += 2;
      n->alt.push_back(finish(parse_if(elif_pos)));
    } else if (is_statement({"else"})) {
      current_ += 2;
      expect(T::kCloseStatement, "Expected closing statement token '%}'");
      n->alt = parse_until({"endif"}, "{% endif %}");
    }
    return n;
  }

  NodePtr parse_macro(uint32_t start) {
    auto n = make(NodeType::kMacro, start);
    uint32_t name_pos = pos();
    n->a = parse_primary();
    if (n->a->type != NodeType::kIdentifier)
      fail_at(name_pos, "Expected identifier following macro statement");
    n->list = parse_args(false);
    expect(T::kCloseStatement, "Expected closing statement token '%}'");
    n->body = parse_until({"endmacro"}, "{% endmacro %}");
    return n;
  }

  NodePtr parse_for(uint32_t start) {
    auto n = make(NodeType::kFor, start);
    uint32_t var_pos = pos();
    n->a = parse_expression_sequence(true);
    if (n->a->type != NodeType::kIdentifier && n->a->type != NodeType::kTupleLiteral)
      fail_at(var_pos, "Expected identifier/tuple for the loop variable");
    if (!is_identifier("in")) fail("Expected `in` keyword following loop variable");
    ++current_;
    n->b = parse_expression();
    expect(T::kCloseStatement, "Expected closing statement token '%}'");
    n->body = parse_until({"endfor", "else"}, "{% endfor %}");
    if (is_statement({"else"})) {
      current_ += 2;
      expect(T::kCloseStatement, "Expected closing statement token '%}'");
      n->alt = parse_until({"endfor"}, "{% endfor %}");
    }
    return n;
  }

  // ---- expressions --------------------------------------------------------------------------

  NodePtr parse_expression_sequence(bool primary) {
    uint32_t start = pos();
    auto next = [&] { return primary ? parse_primary() : parse_expression(); };
    NodePtr first = next();
    if (!is(T::kComma)) return first;
    auto tuple = make(NodeType::kTupleLiteral, start);
    tuple->list.push_back(std::move(first));
    while (true) {
      ++current_;
      tuple->list.push_back(next());
      if (!is(T::kComma)) break;
    }
    return finish(std::move(tuple));
  }

  NodePtr parse_expression() {
    NestingGuard guard(this);
    return parse_if_expression();
  }

  NodePtr parse_if_expression() {
    uint32_t start = pos();
    NodePtr a = parse_logical_or();
    if (!is_identifier("if")) return a;
    ++current_;
    NodePtr test = parse_logical_or();
    if (is_identifier("else")) {
      ++current_;
      auto n = make(NodeType::kTernary, start);
      n->a = std::move(test);
      n->b = std::move(a);
      NestingGuard guard(this);
      n->c = parse_if_expression();
      return finish(std::move(n));
    }
    auto n = make(NodeType::kSelect, start);
    n->a = std::move(a);
    n->b = std::move(test);
    return finish(std::move(n));
  }

  NodePtr binary(std::string op, NodePtr left, NodePtr right, uint32_t at) {
    auto n = make(NodeType::kBinary, at);
    n->text = std::move(op);
    n->a = std::move(left);
    n->b = std::move(right);
    return finish(std::move(n));
  }

  NodePtr parse_logical_or() {
    NodePtr left = parse_logical_and();
    while (is_identifier("or")) {
      uint32_t at = pos();
      ++current_;
      left = binary("or", std::move(left), parse_logical_and(), at);
    }
    return left;
  }

  NodePtr parse_logical_and() {
    NodePtr left = parse_logical_not();
    while (is_identifier("and")) {
      uint32_t at = pos();
      ++current_;
      left = binary("and", std::move(left), parse_logical_not(), at);
    }
    return left;
  }

  NodePtr parse_logical_not() {
    NestingGuard guard(this);
    NodePtr right;
    while (is_identifier("not")) {
      uint32_t at = pos();
      ++current_;
      auto n = make(NodeType::kUnary, at);
      n->text = "not";
      n->a = parse_logical_not();
      right = finish(std::move(n));
    }
    return right ? std::move(right) : parse_comparison();
  }

  NodePtr parse_comparison() {
    NodePtr left = parse_additive();
    while (true) {
      uint32_t at = pos();
      std::string op;
      if (is_identifier({"not", "in"})) {
        op = "not in";
        current_ += 2;
      } else if (is_identifier("in")) {
        op = "in";
        ++current_;
      } else if (is(T::kComparisonBinaryOperator)) {
        op = tokens_[current_++].value;
      } else {
        break;
      }
      left = binary(op, std::move(left), parse_additive(), at);
    }
    return left;
  }

  NodePtr parse_additive() {
    NodePtr left = parse_multiplicative();
    while (is(T::kAdditiveBinaryOperator)) {
      uint32_t at = pos();
      std::string op = tokens_[current_++].value;
      left = binary(op, std::move(left), parse_multiplicative(), at);
    }
    return left;
  }

  NodePtr parse_multiplicative() {
    NodePtr left = parse_power();
    while (is(T::kMultiplicativeBinaryOperator)) {
      uint32_t at = pos();
      std::string op = tokens_[current_++].value;
      left = binary(op, std::move(left), parse_power(), at);
    }
    return left;
  }

  NodePtr parse_power() {
    NodePtr left = parse_test();
    while (is(T::kExponentiationBinaryOperator)) {
      uint32_t at = pos();
      std::string op = tokens_[current_++].value;
      left = binary(op, std::move(left), parse_test(), at);
    }
    return left;
  }

  NodePtr parse_test() {
    NodePtr operand = parse_filter();
    while (is_identifier("is")) {
      uint32_t at = pos();
      ++current_;
      bool negate = is_identifier("not");
      if (negate) ++current_;
      uint32_t test_pos = pos();
      NodePtr test = parse_primary();
      if (test->type != NodeType::kIdentifier) fail_at(test_pos, "Expected identifier for the test");
      auto n = make(NodeType::kTest, at);
      n->a = std::move(operand);
      n->flag = negate;
      n->text = test->text;
      operand = finish(std::move(n));
    }
    return operand;
  }

  NodePtr parse_filter() {
    NodePtr operand = parse_unary_sign();
    while (is(T::kPipe)) {
      uint32_t at = pos();
      ++current_;
      uint32_t filter_pos = pos();
      NodePtr filter = parse_primary();
      if (filter->type != NodeType::kIdentifier)
        fail_at(filter_pos, "Expected identifier for the filter");
      if (is(T::kOpenParen)) filter = parse_call(std::move(filter));
      auto n = make(NodeType::kFilter, at);
      n->a = std::move(operand);
      n->b = std::move(filter);
      operand = finish(std::move(n));
    }
    return operand;
  }

  NodePtr parse_unary_sign() {
    if (!at_end()) {
      const Token& tok = tokens_[current_];
      if ((tok.type == T::kUnaryOperator || tok.type == T::kAdditiveBinaryOperator) &&
          (tok.value == "-" || tok.value == "+")) {
        NestingGuard guard(this);
        auto n = make(NodeType::kUnary, tok.pos);
        n->text = tok.value;
        ++current_;
        n->a = parse_unary_sign();
        return finish(std::move(n));
      }
    }
    NodePtr member = parse_member(parse_primary());
    if (is(T::kOpenParen)) return parse_call(std::move(member));
    return member;
  }

  NodePtr parse_call(NodePtr callee) {
    auto n = make(NodeType::kCall, callee->pos);
    n->a = std::move(callee);
    n->list = parse_args(true);
    NodePtr expr = parse_member(finish(std::move(n)));
    if (is(T::kOpenParen)) {
      NestingGuard guard(this);
      expr = parse_call(std::move(expr));
    }
    return expr;
  }

  NodeList parse_args(bool call_mode) {
    expect(T::kOpenParen, "Expected opening parenthesis for arguments list");
    NodeList args;
    std::set<std::string> names;
    bool saw_keyword = false, saw_spread = false;
    while (!is(T::kCloseParen)) {
      uint32_t at = pos();
      bool keyword_spread = is(T::kExponentiationBinaryOperator);
      bool positional_spread =
          is(T::kMultiplicativeBinaryOperator) && tokens_[current_].value == "*";
      if (!call_mode && (keyword_spread || positional_spread))
        fail("Argument unpacking is not allowed in parameter declarations");
      if (keyword_spread) {
        ++current_;
        auto n = make(NodeType::kKeywordSpread, at);
        n->a = parse_expression();
        args.push_back(finish(std::move(n)));
        if (is(T::kComma)) ++current_;
        if (!is(T::kCloseParen))
          fail("Expected closing parenthesis: `**` must be applied to the final argument");
        break;
      }
      NodePtr arg;
      if (positional_spread) {
        if (saw_spread) fail("Only one `*` argument unpacking is allowed");
        saw_spread = true;
        ++current_;
        auto n = make(NodeType::kSpread, at);
        n->a = parse_expression();
        arg = finish(std::move(n));
      } else {
        arg = parse_expression();
        if (is(T::kEquals)) {
          ++current_;
          if (arg->type != NodeType::kIdentifier)
            fail_at(at, call_mode ? "Expected identifier for keyword argument"
                                  : "Expected identifier for parameter declaration");
          auto kw = make(NodeType::kKeywordArgument, at);
          kw->a = std::move(arg);
          kw->b = parse_expression();
          arg = finish(std::move(kw));
        }
        if (!call_mode) {
          if (arg->type != NodeType::kIdentifier && arg->type != NodeType::kKeywordArgument)
            fail_at(at, "Expected identifier for parameter declaration");
          const std::string& pname =
              arg->type == NodeType::kIdentifier ? arg->text : arg->a->text;
          if (!names.insert(pname).second) fail_at(at, "Duplicate parameter name: " + pname);
        }
        if (arg->type == NodeType::kKeywordArgument) {
          saw_keyword = true;
        } else if (saw_keyword) {
          fail_at(at, call_mode ? "Positional arguments must come before keyword arguments"
                                : "Non-default argument follows default argument");
        } else if (saw_spread) {
          fail_at(at, "Positional arguments must not follow `*` argument unpacking");
        }
      }
      args.push_back(std::move(arg));
      if (is(T::kComma)) ++current_;
    }
    expect(T::kCloseParen, "Expected closing parenthesis for arguments list");
    return args;
  }

  NodePtr parse_subscript() {
    uint32_t start = pos();
    std::vector<NodePtr> slices;
    bool is_slice = false;
    while (!is(T::kCloseSquareBracket)) {
      if (is(T::kColon)) {
        slices.push_back(nullptr);
        ++current_;
        is_slice = true;
      } else {
        slices.push_back(parse_expression());
        if (is(T::kColon)) {
          ++current_;
          is_slice = true;
        }
      }
    }
    if (slices.empty()) fail("Expected at least one argument for member/slice expression");
    if (!is_slice) return std::move(slices[0]);
    if (slices.size() > 3) fail_at(start, "Expected 0-3 arguments for slice expression");
    auto n = make(NodeType::kSlice, start);
    slices.resize(3);
    n->a = std::move(slices[0]);
    n->b = std::move(slices[1]);
    n->c = std::move(slices[2]);
    return finish(std::move(n));
  }

  NodePtr parse_member(NodePtr object) {
    while (is(T::kDot) || is(T::kOpenSquareBracket)) {
      bool computed = tokens_[current_].type == T::kOpenSquareBracket;
      uint32_t at = pos();
      ++current_;
      auto n = make(NodeType::kMember, object->pos);
      n->flag = computed;
      if (computed) {
        NestingGuard guard(this);
        n->b = parse_subscript();
        expect(T::kCloseSquareBracket, "Expected closing square bracket");
      } else {
        n->b = parse_primary();
        if (n->b->type != NodeType::kIdentifier && n->b->type != NodeType::kIntegerLiteral)
          fail_at(at, "Expected identifier or integer following dot operator");
      }
      n->a = std::move(object);
      object = finish(std::move(n));
    }
    return object;
  }

  NodePtr parse_primary() {
    NestingGuard guard(this);
    if (at_end()) fail("unexpected end of template in expression");
    const Token& tok = tokens_[current_++];
    switch (tok.type) {
      case T::kNumericLiteral: {
        bool is_float = tok.value.find('.') != std::string::npos;
        auto n = make(is_float ? NodeType::kFloatLiteral : NodeType::kIntegerLiteral, tok.pos);
        n->number = std::strtod(tok.value.c_str(), nullptr);
        return finish(std::move(n));
      }
      case T::kStringLiteral: {
        auto n = make(NodeType::kStringLiteral, tok.pos);
        n->text = tok.value;
        while (is(T::kStringLiteral)) n->text += tokens_[current_++].value;
        return finish(std::move(n));
      }
      case T::kIdentifier: {
        auto n = make(NodeType::kIdentifier, tok.pos);
        n->text = tok.value;
        return finish(std::move(n));
      }
      case T::kOpenParen: {
        NodePtr e = parse_expression_sequence(false);
        expect(T::kCloseParen, "Expected closing parenthesis");
        return e;
      }
      case T::kOpenSquareBracket: {
        auto n = make(NodeType::kArrayLiteral, tok.pos);
        while (!is(T::kCloseSquareBracket)) {
          n->list.push_back(parse_expression());
          if (is(T::kComma)) ++current_;
        }
        ++current_;
        return finish(std::move(n));
      }
      case T::kOpenCurlyBracket: {
        auto n = make(NodeType::kObjectLiteral, tok.pos);
        while (!is(T::kCloseCurlyBracket)) {
          NodePtr key = parse_expression();
          expect(T::kColon, "Expected colon between key and value in object literal");
          NodePtr value = parse_expression();
          n->pairs.emplace_back(std::move(key), std::move(value));
          if (is(T::kComma)) ++current_;
        }
        ++current_;
        return finish(std::move(n));
      }
      default:
        --current_;
        fail(std::string("Unexpected token: ") + token_type_name(tok.type) + " '" + tok.value + "'");
    }
  }

  const std::vector<Token>& tokens_;
  std::string_view source_;
  size_t current_ = 0;
  int nesting_ = 0;
};

}  // namespace

NodeList parse(const std::vector<Token>& tokens, std::string_view source) {
  return Parser(tokens, source).run();
}

}  // namespace meshlm::tmpl
