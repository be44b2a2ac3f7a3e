// Syntax tree of a template, with the node kinds of @huggingface/jinja's ast.ts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace meshlm::tmpl {

enum class NodeType : uint8_t {
  // statements
  kText,  // literal text outside tags (a StringLiteral in ast.ts)
  kComment,
  kIf,
  kFor,
  kBreak,
  kContinue,
  kSet,
  kMacro,
  kCallStatement,
  kFilterStatement,
  // expressions
  kMember,
  kCall,
  kIdentifier,
  kIntegerLiteral,
  kFloatLiteral,
  kStringLiteral,
  kArrayLiteral,
  kTupleLiteral,
  kObjectLiteral,
  kBinary,
  kFilter,
  kTest,
  kUnary,
  kSlice,
  kKeywordArgument,
  kSpread,
  kKeywordSpread,
  kSelect,
  kTernary,
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using NodeList = std::vector<NodePtr>;

// One generic node; the meaning of a, b, c, list, body and alt depends on `type`:
//   If: a=test body alt        For: a=loopvar b=iterable body alt=else-block
//   Set: a=assignee b=value|null body      Macro: a=name list=params body
//   CallStatement: a=call (kCall) list=caller params body     FilterStatement: a=filter body
//   Member: a=object b=property flag=computed     Call: a=callee list=args
//   Binary: text=operator a b     Unary: text=operator a     Filter: a=operand b=filter
//   Test: a=operand text=test name flag=negated     Slice: a=start b=stop c=step (null = none)
//   KeywordArgument: a=key (Identifier) b=value     Spread / KeywordSpread: a
//   Select: a=lhs b=test    Ternary: a=condition b=if-true c=if-false
//   ArrayLiteral / TupleLiteral: list     ObjectLiteral: pairs
//   Identifier / StringLiteral / Text / Comment: text     Integer/FloatLiteral: number
struct Node {
  NodeType type;
  uint32_t pos = 0;  // byte offset in the template source
  int depth = 1;     // height of the subtree (bounded, so evaluation cannot overflow the stack)
  bool flag = false;
  double number = 0;
  std::string text;
  NodePtr a, b, c;
  NodeList list, body, alt;
  std::vector<std::pair<NodePtr, NodePtr>> pairs;
};

}  // namespace meshlm::tmpl
