// The pure parts of the hub client: id / name / ETag validation, file selection, URLs, the
// environment, progress formatting.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/byte_count.h"
#include "core/error.h"
#include "hub/cache_layout.h"
#include "hub/file_selection.h"
#include "hub/http_client.h"
#include "hub/hub.h"
#include "hub/progress.h"

using namespace meshlm::hub;
using meshlm::format_bytes;

TEST(HubIds, RepoIdShape) {
  for (const char* ok :
       {"Qwen/Qwen3-0.6B", "meta-llama/Llama-3.2-1B-Instruct", "a/b", "org_1/x.y_z"})
    EXPECT_TRUE(is_repo_id(ok)) << ok;
  for (const char* bad :
       {"", "qwen", "/x", "x/", "a/b/c", "a/../b", "../a", "a/..", "a--b/c", "a/b--c", "a/.b",
        "a/b.", "-a/b", "a/b.git", "a/b c", "a/b\\c", "a/ü", "a/b?x", "~/b"})
    EXPECT_FALSE(is_repo_id(bad)) << bad;
  EXPECT_FALSE(is_repo_id("a/" + std::string(97, 'x')));
  EXPECT_TRUE(is_repo_id("a/" + std::string(96, 'x')));
}

TEST(HubIds, FileNamesAndRevisions) {
  for (const char* ok : {"config.json", "onnx/model.onnx", "a b.json"})
    EXPECT_NO_THROW(validate_repo_file_name(ok, "t")) << ok;
  for (const char* bad :
       {"", "/etc/passwd", "../x", "a/../../x", "a//b", "./x", "a/.", "a\\b", "a\nb", "x/"})
    EXPECT_THROW(validate_repo_file_name(bad, "t"), meshlm::Error) << bad;
  for (const char* ok : {"main", "v1.0", "refs/pr/3", "0123456789abcdef0123456789abcdef01234567"})
    EXPECT_NO_THROW(validate_revision(ok)) << ok;
  for (const char* bad : {"", "../main", "a/../b", "/main", "a b", "a\\b", "a//b"})
    EXPECT_THROW(validate_revision(bad), meshlm::Error) << bad;
}

TEST(HubIds, BlobNameFromEtag) {
  EXPECT_EQ(blob_name_from_etag("\"abc123\""), "abc123");
  EXPECT_EQ(blob_name_from_etag("W/\"abc-123\""), "abc-123");
  EXPECT_EQ(blob_name_from_etag("abc"), "abc");
  for (const char* bad : {"\"\"", "\"../x\"", "\"a/b\"", "\"a.b\"", "\"a b\""})
    EXPECT_THROW(blob_name_from_etag(bad), meshlm::Error) << bad;
}

TEST(HubCache, LayoutPaths) {
  RepoCache c("/c", "Org/Name");
  EXPECT_EQ(c.dir(), "/c/models--Org--Name");
  EXPECT_EQ(c.blob_path("ab"), "/c/models--Org--Name/blobs/ab");
  std::string sha(40, 'a');
  EXPECT_EQ(c.snapshot_file(sha, "x/y.json"),
            "/c/models--Org--Name/snapshots/" + sha + "/x/y.json");
  EXPECT_EQ(c.lock_path("ab"), "/c/.locks/models--Org--Name/ab.lock");
  EXPECT_THROW(c.snapshot_dir("../../x"), meshlm::Error);
  EXPECT_THROW(RepoCache("/c", "../x"), meshlm::Error);
}

TEST(HubSelection, PicksModelFilesOnly) {
  std::vector<std::string> sib = {
      "config.json",    "README.md",           "model.safetensors",      "pytorch_model.bin",
      "tokenizer.json", "chat_template.jinja", "onnx/model.safetensors", "special_tokens_map.json",
      "model.gguf",     ".gitattributes"};
  EXPECT_EQ(select_model_files(sib, "r"),
            (std::vector<std::string>{"chat_template.jinja", "config.json", "model.safetensors",
                                      "special_tokens_map.json", "tokenizer.json"}));
  // No model.safetensors and no index: every top-level safetensors file.
  EXPECT_EQ(
      select_model_files({"config.json", "consolidated.safetensors", "sub/x.safetensors"}, "r"),
      (std::vector<std::string>{"config.json", "consolidated.safetensors"}));
  EXPECT_EQ(select_model_files({"config.json", "model.safetensors.index.json", "m-1.safetensors",
                                "consolidated.safetensors"},
                               "r"),
            (std::vector<std::string>{"config.json", "model.safetensors.index.json"}));
  EXPECT_THROW(select_model_files({"model.safetensors"}, "r"), meshlm::Error);
  EXPECT_THROW(select_model_files({"config.json", "model.gguf"}, "r"), meshlm::Error);
}

TEST(HubSelection, ShardsFromIndex) {
  auto index = nlohmann::json::parse(
      R"({"weight_map":{"a":"m-2.safetensors","b":"m-1.safetensors","c":"m-1.safetensors"}})");
  std::set<std::string> sib = {"m-1.safetensors", "m-2.safetensors"};
  EXPECT_EQ(shards_from_index(index, sib),
            (std::vector<std::string>{"m-1.safetensors", "m-2.safetensors"}));
  EXPECT_THROW(shards_from_index(index, {"m-1.safetensors"}), meshlm::Error);  // not listed
  EXPECT_THROW(shards_from_index(nlohmann::json::parse(R"({"weight_map":{"a":1}})"), sib),
               meshlm::Error);
  EXPECT_THROW(shards_from_index(nlohmann::json::parse(R"({"weight_map":{}})"), sib),
               meshlm::Error);
  EXPECT_THROW(shards_from_index(nlohmann::json::parse("[]"), sib), meshlm::Error);
}

TEST(HubUrl, ParseAndResolve) {
  Url u = parse_url("https://huggingface.co/api/models/a/b?x=1");
  EXPECT_EQ(u.origin, "https://huggingface.co");
  EXPECT_EQ(u.target, "/api/models/a/b?x=1");
  EXPECT_EQ(parse_url("http://127.0.0.1:8080").target, "/");
  EXPECT_THROW(parse_url("ftp://x/y"), meshlm::Error);
  EXPECT_THROW(parse_url("huggingface.co"), meshlm::Error);
  EXPECT_THROW(parse_url("http://user@host/"), meshlm::Error);
  EXPECT_EQ(resolve_location(u, "https://cdn.example/x?sig=1"), "https://cdn.example/x?sig=1");
  EXPECT_EQ(resolve_location(u, "/api/models/c/d"), "https://huggingface.co/api/models/c/d");
  EXPECT_EQ(resolve_location(u, "//cdn.example/x"), "https://cdn.example/x");
  EXPECT_EQ(resolve_location(u, "e"), "https://huggingface.co/api/models/a/e");
  EXPECT_EQ(url_quote("refs/pr/1", false), "refs%2Fpr%2F1");
  EXPECT_EQ(url_quote("a b/c+d.json", true), "a%20b/c%2Bd.json");
}

namespace {
// Sets environment variables for the scope of a test and restores them.
class EnvGuard {
 public:
  void set(const char* name, const char* value) {
    const char* old = std::getenv(name);
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~EnvGuard() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second)
        setenv(it->first.c_str(), it->second->c_str(), 1);
      else
        unsetenv(it->first.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};
}  // namespace

TEST(HubEnv, OptionsFromEnvironment) {
  EnvGuard env;
  for (const char* v :
       {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
        "HF_TOKEN_PATH", "HF_ENDPOINT", "HF_HUB_OFFLINE", "XDG_CACHE_HOME"})
    env.set(v, nullptr);
  env.set("HOME", "/home/u");
  env.set("HF_HOME", nullptr);
  EXPECT_EQ(default_cache_dir(), "/home/u/.cache/huggingface/hub");
  env.set("XDG_CACHE_HOME", "/xdg");
  EXPECT_EQ(default_cache_dir(), "/xdg/huggingface/hub");
  env.set("HF_HOME", "~/hf");
  EXPECT_EQ(default_cache_dir(), "/home/u/hf/hub");
  env.set("HF_HUB_CACHE", "/fast/hub");
  EXPECT_EQ(default_cache_dir(), "/fast/hub");

  PullOptions o = PullOptions::from_env();
  EXPECT_EQ(o.endpoint, "https://huggingface.co");
  EXPECT_EQ(o.cache_dir, "/fast/hub");
  EXPECT_EQ(o.revision, "main");
  EXPECT_FALSE(o.offline);
  EXPECT_EQ(o.token, "");  // no token file under /home/u/hf
  env.set("HF_ENDPOINT", "http://mirror:8080");
  env.set("HF_TOKEN", " hf_abc\n");
  env.set("HF_HUB_OFFLINE", "1");
  o = PullOptions::from_env();
  EXPECT_EQ(o.endpoint, "http://mirror:8080");
  EXPECT_EQ(o.token, "hf_abc");
  EXPECT_TRUE(o.offline);
  env.set("HF_HUB_OFFLINE", "0");
  EXPECT_FALSE(PullOptions::from_env().offline);
}

TEST(HubProgress, Formatting) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(3.4 * 1024 * 1024 * 1024), "3.40 GiB");
  EXPECT_EQ(format_bytes(45.1 * 1024 * 1024), "45.1 MiB");
  EXPECT_EQ(format_duration(48), "0:48");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "?");
}
