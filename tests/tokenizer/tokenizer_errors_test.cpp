// Corrupt tokenizer.json files must give a clear meshlm::Error, never a crash.
#include <gtest/gtest.h>

#include "core/error.h"
#include "test_tokenizers.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::tok {
namespace {

void expect_error(const std::string& json, const std::string& needle) {
  try {
    Tokenizer::load_from_json(json);
    ADD_FAILURE() << "no error for: " << json.substr(0, 200);
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "tokenizer");
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(TokenizerErrors, MalformedJson) {
  expect_error("", "invalid JSON");
  expect_error("{\"model\": {\"vocab\": {\"a\": 0}", "invalid JSON");
  expect_error("{", "invalid JSON");
  expect_error("[1,2]", "expected '{'");
  expect_error("{\"model\": {\"vocab\": {\"a\": 0}}} trailing", "trailing");
  expect_error("{\"model\": {\"vocab\": {\"a\": \"x\"}}}", "expected a number");
  expect_error("{\"model\": {\"vocab\": {\"a\": 1.5}}}", "not an integer");
  expect_error("{\"model\": {\"vocab\": {\"\\ud800\": 1}}}", "surrogate");
  expect_error(std::string("{\"a\": \"\xff\"}"), "UTF-8");
  expect_error(std::string(1000, '[') + std::string(1000, ']'), "expected '{'");
  expect_error("{\"x\": " + std::string(1000, '[') + std::string(1000, ']') + "}", "too deep");
}

TEST(TokenizerErrors, StructuralProblems) {
  expect_error("{}", "no model");
  expect_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": {}}}", "unsupported model");
  expect_error("{\"model\": {\"merges\": []}}", "without vocab");
  expect_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}", "not in vocab");
  expect_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}", "form 'a b'");
  expect_error("{\"model\": {\"vocab\": {\"a\": -1}}}", "out of range");
  expect_error("{\"model\": {\"vocab\": {\"a\": 0}}, \"normalizer\": {\"type\": \"Nope\"}}",
               "unsupported normalizer");
  expect_error(
      "{\"model\": {\"vocab\": {}}, \"pre_tokenizer\": {\"type\": \"Split\", "
      "\"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
      "bad regex");
  expect_error(
      "{\"model\": {\"vocab\": {}}, \"pre_tokenizer\": {\"type\": \"Split\", "
      "\"pattern\": {\"String\": \" \"}, \"behavior\": \"Sideways\"}}",
      "split behavior");
  expect_error("{\"model\": {\"vocab\": {}}, \"decoder\": 5}", "decoder must be");
  expect_error("{\"model\": {\"vocab\": {}}, \"added_tokens\": {}}", "expected an array");
  expect_error(
      "{\"model\": {\"vocab\": {}}, \"post_processor\": {\"type\": "
      "\"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"x\"}}]}}",
      "not defined");
}

TEST(TokenizerErrors, MissingDirectory) {
  EXPECT_THROW(Tokenizer::load_from_dir("/nonexistent/dir"), Error);
}

TEST(TokenizerErrors, TruncationsOfAValidFileNeverCrash) {
  std::string json = testing::byte_level_json();
  int errors = 0;
  for (size_t len = 0; len < json.size(); len += 7) {
    try {
      Tokenizer::load_from_json(json.substr(0, len));
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_EQ(errors, static_cast<int>((json.size() + 6) / 7));
}

}  // namespace
}  // namespace meshlm::tok
