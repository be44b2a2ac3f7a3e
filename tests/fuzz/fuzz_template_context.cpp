// libFuzzer target: real chat templates (Qwen3, Llama 3.2, Gemma 3, Mistral Nemo, DeepSeek V3;
// template_files.h) rendered with hostile contexts. A request's messages, tools and
// chat_template_kwargs reach the template as data: wrong types (content a number, messages an
// object), missing keys, odd roles, deep nesting, huge numbers, strings full of template syntax.
// Byte 0 picks the template; the rest is the context as JSON (inputs that are not JSON objects
// are skipped: the JSON parser is nlohmann's). Rendering must give text or throw meshlm::Error.
// fuzz_template fuzzes the template source instead.
#include <cstddef>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "fuzz_common.h"
#include "template_files.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)meshlm::fuzz::chat_templates();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 8192) return 0;
  auto ctx = nlohmann::ordered_json::parse(data + 1, data + size, nullptr, false);
  if (ctx.is_discarded() || !ctx.is_object()) return 0;
  const auto& templates = meshlm::fuzz::chat_templates();
  try {
    (void)templates[data[0] % templates.size()]->render(ctx);
  } catch (const meshlm::Error&) {
  }
  return 0;
}
