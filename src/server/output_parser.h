// Splits generated text into reasoning, content and tool calls, incrementally, so the streamed
// deltas concatenate to exactly the non-streamed message.
//   reasoning:  <think>...</think> at the start of the output (or the whole output up to
//               </think> when the prompt already opened the block) -> reasoning_content
//   tool calls: Qwen/Hermes  <tool_call>{"name": ..., "arguments": {...}}</tool_call>
//               Llama 3.1   {"name": ..., "parameters": {...}} as the whole reply
// Text that looks like a tool call is held back until the end; if it does not parse it is
// returned as plain content, never an error.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace meshlm::server {

enum class ToolSyntax { None, Hermes, LlamaJson };

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text
};

struct OutputDelta {
  std::string reasoning;
  std::string content;
  bool empty() const { return reasoning.empty() && content.empty(); }
};

class OutputParser {
 public:
  OutputParser(ToolSyntax tools, bool parse_reasoning, bool starts_in_reasoning);

  OutputDelta push(std::string_view text);
  // End of output: what was held back, plus the tool calls when the held text parsed as such.
  OutputDelta finish(std::vector<ToolCall>& calls);

 private:
  enum class Phase { Start, Reasoning, Content, ToolBuffer };
  void step(OutputDelta& out, bool final);

  ToolSyntax tools_;
  bool parse_reasoning_;
  Phase phase_;
  bool content_started_ = false;  // the first non-space content character has been seen
  bool after_think_ = false;      // content follows </think>: its leading blank lines are dropped
  std::string pending_;           // text not yet classified
  std::string tool_text_;         // held-back text that may be tool calls
};

// Parses held-back text as tool calls; false when it is not exactly a list of tool calls.
bool parse_tool_calls(ToolSyntax syntax, const std::string& text, std::vector<ToolCall>& calls);

}  // namespace meshlm::server
