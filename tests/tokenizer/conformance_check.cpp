// Compares meshlm's tokenizer with the reference expectations written by conformance.mjs:
//   conformance_check <model-dir> <corpus.bin> <expected.json>
// Exit 0 when every id and every decoded byte matches, 1 otherwise (mismatches are listed).
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

using meshlm::tok::TokenId;

namespace {

std::string read_all(const char* path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string show(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, 120)) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + (s.size() > 120 ? "..." : "");
}

std::string show_ids(const std::vector<TokenId>& ids, size_t around) {
  std::string out = "[";
  size_t b = around > 5 ? around - 5 : 0;
  for (size_t i = b; i < ids.size() && i < b + 12; ++i) out += std::to_string(ids[i]) + ",";
  return out + "]";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <model-dir> <corpus.bin> <expected.json>\n", argv[0]);
    return 2;
  }
  auto tok = meshlm::tok::Tokenizer::load_from_dir(argv[1]);
  std::string blob = read_all(argv[2]);
  std::vector<std::string> corpus;
  for (size_t pos = 0; pos + 4 <= blob.size();) {
    uint32_t len = static_cast<unsigned char>(blob[pos]) |
                   (static_cast<unsigned char>(blob[pos + 1]) << 8) |
                   (static_cast<unsigned char>(blob[pos + 2]) << 16) |
                   (static_cast<uint32_t>(static_cast<unsigned char>(blob[pos + 3])) << 24);
    corpus.push_back(blob.substr(pos + 4, len));
    pos += 4 + len;
  }
  auto expected = nlohmann::json::parse(read_all(argv[3]));
  const auto& cases = expected.at("cases");
  if (cases.size() != corpus.size()) {
    std::fprintf(stderr, "corpus has %zu cases, expectations %zu\n", corpus.size(), cases.size());
    return 1;
  }
  int mismatches = 0;
  auto report_ids = [&](const char* what, size_t i, const std::vector<TokenId>& got,
                        const std::vector<TokenId>& want) {
    if (got == want) return;
    size_t d = 0;
    while (d < got.size() && d < want.size() && got[d] == want[d]) ++d;
    if (++mismatches <= 20)
      std::printf("  %s case %zu (%s): first difference at %zu: got %s want %s (len %zu vs %zu)\n",
                  what, i, show(corpus[i]).c_str(), d, show_ids(got, d).c_str(),
                  show_ids(want, d).c_str(), got.size(), want.size());
  };
  auto report_text = [&](const char* what, size_t i, const std::string& got,
                         const std::string& want) {
    if (got == want) return;
    if (++mismatches <= 20)
      std::printf("  %s %zu: got '%s' want '%s'\n", what, i, show(got).c_str(), show(want).c_str());
  };
  for (size_t i = 0; i < corpus.size(); ++i) {
    const auto& c = cases[i];
    auto want_plain = c.at("ids").get<std::vector<TokenId>>();
    auto want_special = c.at("ids_special").get<std::vector<TokenId>>();
    report_ids("encode", i, tok->encode(corpus[i], false), want_plain);
    report_ids("encode+special", i, tok->encode(corpus[i], true), want_special);
    report_text("decode", i, tok->decode(want_special, false), c.at("text").get<std::string>());
    report_text("decode skip", i, tok->decode(want_special, true),
                c.at("text_skip").get<std::string>());
  }
  size_t di = 0;
  for (const auto& d : expected.at("decodes")) {
    auto ids = d.at("ids").get<std::vector<TokenId>>();
    report_text("decode-only", di, tok->decode(ids, false), d.at("text").get<std::string>());
    report_text("decode-only skip", di, tok->decode(ids, true),
                d.at("text_skip").get<std::string>());
    ++di;
  }
  std::printf("%s: %d mismatches over %zu encode cases and %zu decode cases\n", argv[1], mismatches,
              corpus.size(), di);
  return mismatches ? 1 : 0;
}
