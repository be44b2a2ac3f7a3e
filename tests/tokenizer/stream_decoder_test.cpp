#include <gtest/gtest.h>

#include "test_tokenizers.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::tok {
namespace {

class StreamDecoderTest : public ::testing::Test {
 protected:
  void SetUp() override { tok_ = Tokenizer::load_from_json(testing::byte_level_json()); }
  // Pushes every id and returns the deltas.
  std::vector<std::string> feed(StreamDecoder& d, const std::vector<TokenId>& ids) {
    std::vector<std::string> out;
    for (TokenId id : ids) out.push_back(d.push(id));
    return out;
  }
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(StreamDecoderTest, EmojiSplitAcrossByteTokensComesOutWhole) {
  std::string text =
      "a\xF0\x9F\x98\x80"
      "b";  // a😀b
  std::vector<TokenId> ids = tok_->encode(text, false);
  ASSERT_EQ(ids.size(), 6u);  // one token per byte
  StreamDecoder d(*tok_, {});
  auto deltas = feed(d, ids);
  EXPECT_EQ(deltas[0], "a");
  EXPECT_EQ(deltas[1], "");
  EXPECT_EQ(deltas[2], "");
  EXPECT_EQ(deltas[3], "");
  EXPECT_EQ(deltas[4], "\xF0\x9F\x98\x80");
  EXPECT_EQ(deltas[5], "b");
  EXPECT_EQ(d.finish(), "");
  EXPECT_FALSE(d.stopped());
}

TEST_F(StreamDecoderTest, IncompleteTailBecomesReplacementAtFinish) {
  std::vector<TokenId> ids = tok_->encode("x\xE4\xB8\xAD", false);  // x中
  ids.pop_back();                                                   // cut the last byte
  StreamDecoder d(*tok_, {});
  std::string all;
  for (TokenId id : ids) all += d.push(id);
  EXPECT_EQ(all, "x");
  EXPECT_EQ(d.finish(), "\xEF\xBF\xBD");
}

TEST_F(StreamDecoderTest, StopStringAcrossTokensIsHeldThenCut) {
  StreamDecoder d(*tok_, {"STOP"});
  std::string out;
  for (TokenId id : tok_->encode("hello STO", false)) out += d.push(id);
  EXPECT_EQ(out, "hello ");  // "STO" held back: it may become STOP
  EXPECT_FALSE(d.stopped());
  for (TokenId id : tok_->encode("P and more", false)) out += d.push(id);
  EXPECT_EQ(out, "hello ");
  EXPECT_TRUE(d.stopped());
  EXPECT_EQ(d.matched_stop(), "STOP");
  EXPECT_EQ(d.push(tok_->encode("x", false)[0]), "");
  EXPECT_EQ(d.finish(), "");
}

TEST_F(StreamDecoderTest, HeldTextIsReleasedWhenStopCannotMatch) {
  StreamDecoder d(*tok_, {"STOP"});
  std::string out;
  for (TokenId id : tok_->encode("ST", false)) out += d.push(id);
  EXPECT_EQ(out, "");
  for (TokenId id : tok_->encode("AR", false)) out += d.push(id);
  EXPECT_EQ(out, "STAR");
  EXPECT_FALSE(d.stopped());
}

TEST_F(StreamDecoderTest, StopAtStart) {
  StreamDecoder d(*tok_, {"\n\n", "User:"});
  std::string out;
  for (TokenId id : tok_->encode("User: hi", false)) out += d.push(id);
  EXPECT_EQ(out, "");
  EXPECT_TRUE(d.stopped());
  EXPECT_EQ(d.matched_stop(), "User:");
}

TEST_F(StreamDecoderTest, HeldPrefixReleasedAtFinish) {
  StreamDecoder d(*tok_, {"</answer>"});
  std::string out;
  for (TokenId id : tok_->encode("42</ans", false)) out += d.push(id);
  EXPECT_EQ(out, "42");
  EXPECT_EQ(d.finish(), "</ans");
}

TEST_F(StreamDecoderTest, StopStringWithMultibyteCharacters) {
  StreamDecoder d(*tok_, {"\xE3\x80\x82\xE3\x80\x82"});  // "。。"
  std::string out;
  for (TokenId id :
       tok_->encode("\xE4\xBD\xA0\xE3\x80\x82\xE5\xA5\xBD\xE3\x80\x82\xE3\x80\x82z", false))
    out += d.push(id);
  EXPECT_EQ(out, "\xE4\xBD\xA0\xE3\x80\x82\xE5\xA5\xBD");
  EXPECT_TRUE(d.stopped());
}

TEST_F(StreamDecoderTest, SpecialTokensSkippedOrKept) {
  std::vector<TokenId> ids = tok_->encode("hi<|stop|>yo", false);
  StreamDecoder skip(*tok_, {});
  StreamDecoder keep(*tok_, {}, /*skip_special=*/false);
  std::string a, b;
  for (TokenId id : ids) {
    a += skip.push(id);
    b += keep.push(id);
  }
  a += skip.finish();
  b += keep.finish();
  EXPECT_EQ(a, "hiyo");
  EXPECT_EQ(b, "hi<|stop|>yo");
}

TEST_F(StreamDecoderTest, ConcatenatedDeltasEqualFullDecode) {
  std::string text = "Mixed: 中文 😀👨\u200d👩 e\xCC\x81 \xF0\x9F\x87\xBA\xF0\x9F\x87\xB8 end";
  std::vector<TokenId> ids = tok_->encode(text, false);
  StreamDecoder d(*tok_, {});
  std::string out;
  for (TokenId id : ids) {
    std::string delta = d.push(id);
    // Every delta is whole UTF-8 characters.
    EXPECT_EQ(tok_->decode(tok_->encode(delta, false), false), delta);
    out += delta;
  }
  out += d.finish();
  EXPECT_EQ(out, tok_->decode(ids, true));
  EXPECT_EQ(out, text);
}

}  // namespace
}  // namespace meshlm::tok
