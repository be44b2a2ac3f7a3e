// Real chat templates committed under tests/fuzz/data (copied from the models' tokenizer_config.json:
// Qwen3, Llama 3.2, Gemma 3, Mistral Nemo, DeepSeek V3), parsed once.
#pragma once

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "template/chat_template.h"

namespace meshlm::fuzz {

inline const std::vector<std::unique_ptr<tmpl::ChatTemplate>>& chat_templates() {
  static const auto templates = [] {
    std::vector<std::unique_ptr<tmpl::ChatTemplate>> out;
    for (const char* name : {"qwen3", "llama3_2", "gemma3", "mistral_nemo", "deepseek_v3"}) {
      std::ifstream in(std::string(MESHLM_FUZZ_DATA_DIR) + "/" + name + ".jinja");
      if (!in) __builtin_trap();  // the data folder is part of the source tree
      std::stringstream ss;
      ss << in.rdbuf();
      out.push_back(tmpl::ChatTemplate::parse(ss.str()));
    }
    return out;
  }();
  return templates;
}

}  // namespace meshlm::fuzz
