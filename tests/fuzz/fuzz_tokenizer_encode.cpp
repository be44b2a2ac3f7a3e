// libFuzzer target: arbitrary bytes through encode / decode / StreamDecoder of a byte-level
// tokenizer (MESHLM_FUZZ_TOKENIZER=<model dir> picks a real one, e.g. Qwen3's). Checks that
// decode(encode(x)) == x with invalid UTF-8 replaced, and that streamed deltas add up.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "../tokenizer/test_tokenizers.h"
#include "core/utf8.h"
#include "tokenizer/tokenizer.h"

static const meshlm::tok::Tokenizer& tokenizer() {
  static std::unique_ptr<meshlm::tok::Tokenizer> tok = [] {
    const char* dir = std::getenv("MESHLM_FUZZ_TOKENIZER");
    return dir ? meshlm::tok::Tokenizer::load_from_dir(dir)
               : meshlm::tok::Tokenizer::load_from_json(meshlm::tok::testing::byte_level_json());
  }();
  return *tok;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& tok = tokenizer();
  std::string text(reinterpret_cast<const char*>(data), size);
  auto ids = tok.encode(text, false);
  auto with_special = tok.encode(text, true);
  std::string back = tok.decode(ids, false);
  if (!std::getenv("MESHLM_FUZZ_TOKENIZER") && back != meshlm::utf8_lossy(text))
    __builtin_trap();
  meshlm::tok::StreamDecoder sd(tok, {}, /*skip_special=*/false);
  std::string streamed;
  for (auto id : ids) streamed += sd.push(id);
  streamed += sd.finish();
  if (streamed != back) __builtin_trap();
  (void)with_special;
  return 0;
}
