// `meshlm tokenize` (text on stdin -> JSON ids) and `meshlm detokenize` (JSON ids -> text).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "command.h"
#include "tokenizer/tokenizer.h"

namespace {

std::string read_stdin() {
  std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  return s;
}

int run_tokenize(int argc, char** argv) {
  CLI::App app("Tokenize the text on stdin; prints a JSON array of ids", "meshlm tokenize");
  std::string model;
  bool special = false;
  app.add_option("--model", model, "model folder with tokenizer.json")->required();
  app.add_flag("--special", special, "add special tokens (BOS/EOS templates)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto tok = meshlm::tok::Tokenizer::load(model);
  std::vector<meshlm::tok::TokenId> ids = tok->encode(read_stdin(), special);
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  out += "]\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int run_detokenize(int argc, char** argv) {
  CLI::App app("Decode a JSON array of ids on stdin; prints the text", "meshlm detokenize");
  std::string model;
  bool skip_special = false;
  app.add_option("--model", model, "model folder with tokenizer.json")->required();
  app.add_flag("--skip-special", skip_special, "drop special tokens from the output");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto tok = meshlm::tok::Tokenizer::load(model);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_stdin());
  } catch (const nlohmann::json::exception& e) {
    std::fprintf(stderr, "meshlm detokenize: stdin is not JSON: %s\n", e.what());
    return 1;
  }
  if (!j.is_array()) {
    std::fprintf(stderr, "meshlm detokenize: expected a JSON array of ids\n");
    return 1;
  }
  std::vector<meshlm::tok::TokenId> ids;
  for (const auto& v : j) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) {
      std::fprintf(stderr, "meshlm detokenize: ids must be non-negative integers\n");
      return 1;
    }
    ids.push_back(static_cast<meshlm::tok::TokenId>(v.get<int64_t>()));
  }
  std::string text = tok->decode(ids, skip_special);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

meshlm::cli::Registrar reg_tokenize("tokenize", "text on stdin -> JSON ids", run_tokenize);
meshlm::cli::Registrar reg_detokenize("detokenize", "JSON ids on stdin -> text", run_detokenize);

}  // namespace
