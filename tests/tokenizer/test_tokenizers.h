// Tiny tokenizer.json documents built in code, so the unit tests need no downloaded files.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace meshlm::tok::testing {

// GPT-2 byte alphabet character for byte b (as UTF-8).
inline std::string byte_char(int b) {
  bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  int cp = b;
  if (!printable) {
    int n = 0;
    for (int k = 0; k < b; ++k)
      if (!((k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || k >= 0xAE)) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

// Byte-level BPE: ids 0..255 are the bytes, 256 = "he" (merge h e), 257 = "<|stop|>" (special),
// 258 = "<|tool|>" (not special).
inline std::string byte_level_json() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  vocab["he"] = 256;
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 257},
         {"content", "<|stop|>"},
         {"special", true},
         {"lstrip", false},
         {"rstrip", false},
         {"single_word", false},
         {"normalized", false}},
        {{"id", 258},
         {"content", "<|tool|>"},
         {"special", false},
         {"lstrip", false},
         {"rstrip", false},
         {"single_word", false},
         {"normalized", false}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"h e"}}, {"byte_fallback", false}}}};
  return j.dump();
}

}  // namespace meshlm::tok::testing
