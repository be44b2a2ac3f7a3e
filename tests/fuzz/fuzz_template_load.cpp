// libFuzzer target: the files a model folder supplies next to its chat template
// (template/chat_template.h): chat_template.json and tokenizer_config.json ("chat_template" as a
// string or a list of {name, template}; bos/eos/... tokens as strings or AddedToken objects).
// Byte 0 picks the file, the rest is its content, written into a scratch folder (in /dev/shm
// when there is one). ChatTemplate::load_from_dir and default_context must succeed or throw
// meshlm::Error; a loaded template renders a fixed conversation with the file's special tokens.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "fuzz_common.h"
#include "template/chat_template.h"

namespace fs = std::filesystem;

namespace {

const fs::path& scratch() {
  static const fs::path dir = [] {
    std::string base = fs::is_directory("/dev/shm") ? "/dev/shm" : fs::temp_directory_path().string();
    std::string tmpl = base + "/meshlm-fuzz-template-XXXXXX";
    if (!mkdtemp(tmpl.data())) __builtin_trap();
    std::atexit([] { fs::remove_all(scratch()); });
    return fs::path(tmpl);
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const fs::path& dir = scratch();
  const char* name = (data[0] & 1) ? "chat_template.json" : "tokenizer_config.json";
  fs::remove(dir / "chat_template.json");
  fs::remove(dir / "tokenizer_config.json");
  std::ofstream(dir / name, std::ios::binary)
      .write(reinterpret_cast<const char*>(data) + 1, static_cast<std::streamsize>(size - 1));
  try {
    auto t = meshlm::tmpl::ChatTemplate::load_from_dir(dir.string());
    nlohmann::ordered_json vars = {
        {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"add_generation_prompt", true}};
    auto ctx = meshlm::tmpl::default_context(dir.string(), vars);
    meshlm::fuzz::require(ctx.is_object() && ctx.contains("messages"));
    (void)t->render(ctx);
  } catch (const meshlm::Error&) {
  }
  try {  // the special tokens alone, for a tokenizer_config.json without a template
    (void)meshlm::tmpl::default_context(dir.string(), nlohmann::json::object());
  } catch (const meshlm::Error&) {
  }
  return 0;
}
