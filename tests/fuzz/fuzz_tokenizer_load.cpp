// libFuzzer target: arbitrary bytes as tokenizer.json must load or throw meshlm::Error, never
// crash; a loaded tokenizer must encode and decode a fixed text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string json(reinterpret_cast<const char*>(data), size);
  // Split off an optional tokenizer_config.json after a NUL byte.
  std::string config;
  if (size_t nul = json.find('\0'); nul != std::string::npos) {
    config = json.substr(nul + 1);
    json.resize(nul);
  }
  try {
    auto tok = meshlm::tok::Tokenizer::load_from_json(json, config);
    auto ids = tok->encode("Hello <s> w\xC3\xB6rld \xF0\x9F\x98\x80 123\n", true);
    (void)tok->decode(ids, false);
    (void)tok->decode({0, 1, 2, 3, 255, 256, 1000000}, true);
    meshlm::tok::StreamDecoder sd(*tok, {"ld"});
    for (auto id : ids) (void)sd.push(id);
    (void)sd.finish();
  } catch (const meshlm::Error&) {
  }
  return 0;
}
