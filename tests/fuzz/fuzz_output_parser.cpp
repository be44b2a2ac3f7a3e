// libFuzzer target: the split of generated text into reasoning, content and tool calls
// (server/output_parser.h). What a model generates follows what a client asked it to, so the
// text is untrusted. Byte 0 picks the tool syntax (none, Hermes <tool_call>, Llama JSON) and the
// reasoning flags, byte 1 seeds the piece sizes; the rest is the generated text, fed once whole
// and once in pieces as tokens arrive. Never throws; the streamed deltas must add up to exactly
// the whole-text result, tool calls included (parse_tool_calls on the held-back text).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "server/output_parser.h"

using namespace meshlm::server;
using meshlm::fuzz::require;

namespace {

struct Parsed {
  std::string reasoning, content;
  std::vector<ToolCall> calls;
};

Parsed run(ToolSyntax tools, bool reasoning, bool in_reasoning, std::string_view text,
           uint32_t seed) {
  OutputParser p(tools, reasoning, in_reasoning);
  Parsed out;
  size_t i = 0;
  while (i < text.size()) {
    size_t n = text.size() - i;
    if (seed != 0) {
      seed = seed * 1103515245u + 12345u;
      n = std::min<size_t>(n, 1 + (seed >> 16) % 8);
    }
    OutputDelta d = p.push(text.substr(i, n));
    out.reasoning += d.reasoning;
    out.content += d.content;
    i += n;
  }
  OutputDelta d = p.finish(out.calls);
  out.reasoning += d.reasoning;
  out.content += d.content;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static const ToolSyntax kSyntax[] = {ToolSyntax::None, ToolSyntax::Hermes, ToolSyntax::LlamaJson};
  const ToolSyntax tools = kSyntax[(data[0] & 3) % 3];
  const bool reasoning = data[0] & 4, in_reasoning = data[0] & 8;
  std::string_view text(reinterpret_cast<const char*>(data) + 2, size - 2);
  Parsed whole = run(tools, reasoning, in_reasoning, text, 0);
  Parsed pieces = run(tools, reasoning, in_reasoning, text, data[1] | 0x100u);
  require(whole.reasoning == pieces.reasoning && whole.content == pieces.content);
  require(whole.calls.size() == pieces.calls.size());
  for (size_t i = 0; i < whole.calls.size(); ++i) {
    require(whole.calls[i].name == pieces.calls[i].name);
    require(whole.calls[i].arguments == pieces.calls[i].arguments);
  }
  if (tools == ToolSyntax::None) require(whole.calls.empty());
  // parse_tool_calls on its own: never throws, adds calls only when it says it parsed.
  std::vector<ToolCall> calls;
  bool ok = parse_tool_calls(tools, std::string(text), calls);
  require(ok == !calls.empty());
  return 0;
}
