// libFuzzer target: parse arbitrary template source and render it with a fixed chat context.
// Any input must give an output or a meshlm::Error, never a crash, a hang or a leak.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "template/chat_template.h"

namespace {

const nlohmann::ordered_json& context() {
  static const nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Hi \"there\"\n{{ x }} 你好 😀"},
      {"role": "assistant", "content": "<think>r</think>ok", "reasoning_content": "r",
       "tool_calls": [{"id": "call_0001", "type": "function",
                       "function": {"name": "f", "arguments": {"a": [1, 2.5, null, true]}}}]},
      {"role": "tool", "content": "{\"r\": 1}"}
    ],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d",
               "parameters": {"type": "object", "properties": {"a": {"type": "array"}}}}}],
    "add_generation_prompt": true, "enable_thinking": false, "bos_token": "<s>",
    "eos_token": "</s>", "date_string": "26 Jul 2024", "n": 3, "f": 0.5
  })");
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 8192) return 0;  // real templates are up to ~4 KB
  std::string_view source(reinterpret_cast<const char*>(data), size);
  try {
    auto t = meshlm::tmpl::ChatTemplate::parse(source);
    (void)t->render(context());
  } catch (const meshlm::Error&) {
  }
  return 0;
}
