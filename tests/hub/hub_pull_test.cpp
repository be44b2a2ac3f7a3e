// hub::pull against the mock hub: cache layout, only the needed files, no second download,
// resume after a dropped connection, HTTP errors, LFS redirect to another host, hostile names,
// checksum mismatch, offline mode.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "hub/hub.h"
#include "mock_hub.h"

namespace fs = std::filesystem;
using meshlm::hub::test::MockFile;
using meshlm::hub::test::MockHub;
using meshlm::hub::test::MockRepo;

namespace {

const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";
const std::string kCommit2 = "fedcba9876543210fedcba9876543210fedcba98";

std::string pattern(size_t n, int seed) {
  std::string s(n, '\0');
  uint32_t x = 2463534242u + uint32_t(seed);
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = char(x & 0xff);
  }
  return s;
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A sharded model with the clutter real repositories carry.
MockRepo tiny_repo(const std::string& commit = kCommit) {
  MockRepo r;
  r.commit = commit;
  r.files["config.json"] = {R"({"architectures":["Qwen3ForCausalLM"],"hidden_size":8})"};
  r.files["generation_config.json"] = {R"({"do_sample":false})"};
  r.files["tokenizer.json"] = {R"({"model":{"type":"BPE","vocab":{}}})"};
  r.files["tokenizer_config.json"] = {R"({"eos_token":"<e>"})"};
  r.files["model.safetensors.index.json"] = {
      R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
      R"("b":"model-00002-of-00002.safetensors"}})"};
  r.files["model-00001-of-00002.safetensors"] = {pattern(20000, 1), true};
  r.files["model-00002-of-00002.safetensors"] = {pattern(12345, 2), true};
  r.files["consolidated.safetensors"] = {pattern(3000, 3), true};  // a second copy of the weights
  r.files["pytorch_model.bin"] = {pattern(5000, 4), true};
  r.files["model.gguf"] = {pattern(100, 5), true};
  r.files["README.md"] = {"# tiny"};
  r.files["onnx/model.onnx"] = {pattern(100, 6), true};
  return r;
}

const std::vector<std::string> kNeeded = {"config.json",
                                          "generation_config.json",
                                          "model-00001-of-00002.safetensors",
                                          "model-00002-of-00002.safetensors",
                                          "model.safetensors.index.json",
                                          "tokenizer.json",
                                          "tokenizer_config.json"};

class HubPull : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/meshlm_hub_testXXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    cache_ = root_ / "cache";
    opts_.endpoint = hub_.endpoint();
    opts_.cache_dir = cache_.string();
    opts_.progress = meshlm::hub::ProgressMode::kNone;
    opts_.retry_backoff_ms = 1;
    opts_.max_retries = 3;
    // Bounds only: no test here waits for a timeout, and the mock hub's thread may be scheduled
    // late on a busy machine.
    opts_.connect_timeout_s = 30;
    opts_.read_timeout_s = 60;
    hub_.set_repo("acme/tiny", tiny_repo());
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path repo_dir() const { return cache_ / "models--acme--tiny"; }
  std::string expect_error(const std::string& repo) {
    try {
      meshlm::hub::pull(repo, opts_);
    } catch (const meshlm::Error& e) {
      EXPECT_EQ(e.component(), "hub");
      return e.what();
    }
    ADD_FAILURE() << "pull of " << repo << " did not fail";
    return "";
  }
  // Every path under root_ (to check nothing escaped the cache).
  std::vector<std::string> all_paths() const {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(root_)) out.push_back(e.path().string());
    return out;
  }

  MockHub hub_;
  fs::path root_, cache_;
  meshlm::hub::PullOptions opts_;
};

TEST_F(HubPull, FullPullHasTheStandardLayoutAndOnlyNeededFiles) {
  auto res = meshlm::hub::pull("acme/tiny", opts_);
  EXPECT_EQ(res.commit, kCommit);
  EXPECT_EQ(fs::path(res.snapshot_dir), fs::absolute(repo_dir() / "snapshots" / kCommit));
  EXPECT_EQ(res.files, kNeeded);
  EXPECT_EQ(res.files_downloaded, int(kNeeded.size()));
  EXPECT_EQ(read_file(repo_dir() / "refs" / "main"), kCommit);  // bare sha, no newline

  MockRepo repo = tiny_repo();
  std::vector<std::string> in_snapshot;
  for (const auto& e : fs::directory_iterator(res.snapshot_dir))
    in_snapshot.push_back(e.path().filename().string());
  std::sort(in_snapshot.begin(), in_snapshot.end());
  EXPECT_EQ(in_snapshot, kNeeded);
  for (const auto& name : kNeeded) {
    const MockFile& f = repo.files[name];
    fs::path link = fs::path(res.snapshot_dir) / name;
    ASSERT_TRUE(fs::is_symlink(link)) << name;
    std::string etag = f.lfs ? MockHub::sha256_hex(f.content) : MockHub::git_sha1_hex(f.content);
    EXPECT_EQ(fs::read_symlink(link), fs::path("../../blobs") / etag) << name;
    EXPECT_EQ(read_file(link), f.content) << name;
    EXPECT_TRUE(fs::is_regular_file(repo_dir() / "blobs" / etag)) << name;
  }
  size_t blobs = 0;
  for (const auto& e : fs::directory_iterator(repo_dir() / "blobs")) {
    EXPECT_EQ(e.path().extension(), "") << "left over: " << e.path();
    ++blobs;
  }
  EXPECT_EQ(blobs, kNeeded.size());
  for (const char* unwanted : {"pytorch_model.bin", "model.gguf", "README", "consolidated", "onnx"})
    EXPECT_EQ(hub_.count("", "", unwanted), 0u) << unwanted;
  // LFS bytes came from the second host (the CDN), small files straight from the hub.
  EXPECT_EQ(hub_.count("cdn", "GET", "model-00001-of-00002.safetensors"), 1u);
  EXPECT_EQ(hub_.count("cdn", "GET", "model-00002-of-00002.safetensors"), 1u);
  EXPECT_EQ(hub_.count("cdn", "", "config.json"), 0u);
}

TEST_F(HubPull, SecondPullDownloadsNothing) {
  auto first = meshlm::hub::pull("acme/tiny", opts_);
  hub_.clear_requests();
  auto second = meshlm::hub::pull("acme/tiny", opts_);
  EXPECT_EQ(second.snapshot_dir, first.snapshot_dir);
  EXPECT_EQ(second.files_downloaded, 0);
  EXPECT_EQ(second.bytes_downloaded, 0u);
  EXPECT_EQ(hub_.count("hub", "", "/resolve/"), 0u);
  EXPECT_EQ(hub_.count("cdn", "", ""), 0u);
  EXPECT_EQ(hub_.count("hub", "GET", "/api/models/acme/tiny/revision/main"), 1u);
}

TEST_F(HubPull, NewCommitWithSameContentReusesBlobs) {
  meshlm::hub::pull("acme/tiny", opts_);
  hub_.set_repo("acme/tiny", tiny_repo(kCommit2));
  hub_.clear_requests();
  auto res = meshlm::hub::pull("acme/tiny", opts_);
  EXPECT_EQ(res.commit, kCommit2);
  EXPECT_EQ(res.files_downloaded, 0);
  EXPECT_EQ(hub_.count("cdn", "", ""), 0u);
  EXPECT_EQ(hub_.count("hub", "GET", "/resolve/"), 0u);  // HEADs only, to learn the ETags
  EXPECT_EQ(read_file(repo_dir() / "refs" / "main"), kCommit2);
  EXPECT_TRUE(fs::exists(repo_dir() / "snapshots" / kCommit / "config.json"));
  EXPECT_TRUE(fs::exists(repo_dir() / "snapshots" / kCommit2 / "model-00002-of-00002.safetensors"));
}

TEST_F(HubPull, DroppedConnectionResumesWithRange) {
  const std::string shard = "model-00001-of-00002.safetensors";
  hub_.drop_connection(shard, 8192, 2);
  auto res = meshlm::hub::pull("acme/tiny", opts_);
  std::vector<std::string> ranges;
  for (const auto& r : hub_.requests())
    if (r.server == "cdn" && r.path.find(shard) != std::string::npos) ranges.push_back(r.range);
  EXPECT_EQ(ranges, (std::vector<std::string>{"", "bytes=8192-", "bytes=16384-"}));
  EXPECT_EQ(read_file(fs::path(res.snapshot_dir) / shard), tiny_repo().files[shard].content);
}

TEST_F(HubPull, PartialDownloadFromAnEarlierRunIsContinued) {
  const std::string shard = "model-00002-of-00002.safetensors";
  hub_.drop_connection(shard, 4096, 1);
  opts_.max_retries = 0;
  std::string err = expect_error("acme/tiny");
  EXPECT_NE(err.find("run again to resume"), std::string::npos) << err;
  std::string sha = MockHub::sha256_hex(tiny_repo().files[shard].content);
  fs::path part = repo_dir() / "blobs" / (sha + ".incomplete");
  ASSERT_TRUE(fs::exists(part));
  EXPECT_EQ(fs::file_size(part), 4096u);

  hub_.clear_requests();
  auto res = meshlm::hub::pull("acme/tiny", opts_);
  EXPECT_FALSE(fs::exists(part));
  EXPECT_EQ(read_file(fs::path(res.snapshot_dir) / shard), tiny_repo().files[shard].content);
  auto reqs = hub_.requests();
  auto it = std::find_if(reqs.begin(), reqs.end(), [&](const auto& r) {
    return r.server == "cdn" && r.path.find(shard) != std::string::npos;
  });
  ASSERT_NE(it, reqs.end());
  EXPECT_EQ(it->range, "bytes=4096-");
  // The rest of the shard, and the two files after it that the first run never reached.
  auto files = tiny_repo().files;
  EXPECT_EQ(res.bytes_downloaded, 12345u - 4096u + files["tokenizer.json"].content.size() +
                                      files["tokenizer_config.json"].content.size());
}

TEST_F(HubPull, NotFoundErrorsNameTheRepositoryOrRevision) {
  std::string err = expect_error("acme/missing");
  EXPECT_NE(err.find("acme/missing"), std::string::npos) << err;
  EXPECT_NE(err.find("HF_TOKEN"), std::string::npos) << err;  // 401: could be private
  opts_.revision = "nope";
  err = expect_error("acme/tiny");
  EXPECT_NE(err.find("revision 'nope' not found in acme/tiny"), std::string::npos) << err;
}

TEST_F(HubPull, PrivateRepoNeedsTokenAndTokenStaysOnTheHub) {
  MockRepo r = tiny_repo();
  r.token = "hf_secret";
  hub_.set_repo("acme/private", r);
  std::string err = expect_error("acme/private");
  EXPECT_NE(err.find("401"), std::string::npos) << err;
  EXPECT_NE(err.find("set HF_TOKEN"), std::string::npos) << err;
  opts_.token = "hf_wrong";
  err = expect_error("acme/private");
  EXPECT_NE(err.find("HF_TOKEN is invalid"), std::string::npos) << err;

  opts_.token = "hf_secret";
  hub_.clear_requests();
  auto res = meshlm::hub::pull("acme/private", opts_);
  EXPECT_EQ(res.files.size(), kNeeded.size());
  size_t cdn = 0;
  for (const auto& q : hub_.requests()) {
    if (q.server == "hub") {
      EXPECT_EQ(q.authorization, "Bearer hf_secret") << q.path;
    } else {
      EXPECT_EQ(q.authorization, "") << "token leaked to the CDN: " << q.path;
      ++cdn;
    }
  }
  EXPECT_EQ(cdn, 2u);
}

TEST_F(HubPull, GatedRepoSaysToAcceptAndSetToken) {
  MockRepo r = tiny_repo();
  r.token = "hf_ok";
  r.gated = true;
  hub_.set_repo("acme/gated", r);
  std::string err = expect_error("acme/gated");
  EXPECT_NE(err.find("gated"), std::string::npos) << err;
  EXPECT_NE(err.find("set HF_TOKEN"), std::string::npos) << err;
  opts_.token = "hf_other";
  err = expect_error("acme/gated");
  EXPECT_NE(err.find("403"), std::string::npos) << err;
  EXPECT_NE(err.find("no access"), std::string::npos) << err;
}

TEST_F(HubPull, HostileNamesAreRefused) {
  for (const std::string bad :
       {"../../evil.safetensors", "/abs/evil.safetensors", "a\\..\\evil.json", "ok/../../evil"}) {
    MockRepo r = tiny_repo();
    r.extra_siblings = {bad};
    hub_.set_repo("acme/hostile", r);
    std::string err = expect_error("acme/hostile");
    EXPECT_NE(err.find("unsafe file"), std::string::npos) << bad << ": " << err;
  }
  // A shard name in the index that climbs out of the snapshot.
  MockRepo r = tiny_repo();
  r.files["model.safetensors.index.json"] = {R"({"weight_map":{"a":"../../../evil.safetensors"}})"};
  r.extra_siblings = {};
  hub_.set_repo("acme/hostile", r);
  std::string err = expect_error("acme/hostile");
  EXPECT_NE(err.find("unsafe file"), std::string::npos) << err;
  // An ETag that is a path.
  r = tiny_repo(kCommit2);
  r.files["config.json"].etag_override = "\"../../../evil\"";
  hub_.set_repo("acme/hostile", r);
  err = expect_error("acme/hostile");
  EXPECT_NE(err.find("ETag"), std::string::npos) << err;
  for (const auto& p : all_paths()) EXPECT_EQ(p.find("evil"), std::string::npos) << p;
  // Bad ids never reach the network.
  hub_.clear_requests();
  for (const std::string bad : {"../etc", "acme/../x", "acme--x/y", "a/b/c", "acme/.hidden", "x"})
    EXPECT_NE(expect_error(bad).find("invalid model id"), std::string::npos) << bad;
  EXPECT_TRUE(hub_.requests().empty());
}

TEST_F(HubPull, ChecksumMismatchIsDetected) {
  MockRepo r = tiny_repo();
  r.files["model-00002-of-00002.safetensors"].corrupt = true;
  hub_.set_repo("acme/tiny", r);
  std::string err = expect_error("acme/tiny");
  EXPECT_NE(err.find("checksum mismatch for model-00002-of-00002.safetensors"), std::string::npos)
      << err;
  std::string sha = MockHub::sha256_hex(r.files["model-00002-of-00002.safetensors"].content);
  EXPECT_FALSE(fs::exists(repo_dir() / "blobs" / sha));
  EXPECT_FALSE(fs::exists(repo_dir() / "blobs" / (sha + ".incomplete")));
}

TEST_F(HubPull, NotEnoughDiskSpaceIsAClearError) {
  MockRepo r = tiny_repo();
  r.files["model-00001-of-00002.safetensors"].size_override = uint64_t(1) << 60;
  hub_.set_repo("acme/tiny", r);
  std::string err = expect_error("acme/tiny");
  EXPECT_NE(err.find("not enough disk space"), std::string::npos) << err;
}

TEST_F(HubPull, OfflineUsesTheCache) {
  opts_.offline = true;
  std::string err = expect_error("acme/tiny");
  EXPECT_NE(err.find("not in the cache"), std::string::npos) << err;
  EXPECT_NE(err.find("HF_HUB_OFFLINE"), std::string::npos) << err;
  EXPECT_TRUE(hub_.requests().empty());

  opts_.offline = false;
  auto online = meshlm::hub::pull("acme/tiny", opts_);
  hub_.clear_requests();
  opts_.offline = true;
  auto offline = meshlm::hub::pull("acme/tiny", opts_);
  EXPECT_TRUE(hub_.requests().empty());
  EXPECT_TRUE(offline.used_cache_only);
  EXPECT_EQ(offline.snapshot_dir, online.snapshot_dir);
  EXPECT_EQ(offline.commit, kCommit);
  opts_.revision = kCommit;  // a commit sha needs no ref
  EXPECT_EQ(meshlm::hub::pull("acme/tiny", opts_).snapshot_dir, online.snapshot_dir);

  // A snapshot missing a shard is not handed out.
  fs::remove(fs::path(online.snapshot_dir) / "model-00002-of-00002.safetensors");
  err = expect_error("acme/tiny");
  EXPECT_NE(err.find("incomplete"), std::string::npos) << err;
}

TEST_F(HubPull, UnreachableHubFallsBackToTheCache) {
  opts_.endpoint = "http://127.0.0.1:1";
  std::string err = expect_error("acme/tiny");
  EXPECT_NE(err.find("cannot reach http://127.0.0.1:1"), std::string::npos) << err;
  opts_.endpoint = "https" + hub_.endpoint().substr(4);  // TLS to a plain-HTTP server
  err = expect_error("acme/tiny");
  EXPECT_NE(err.find("cannot reach https://127.0.0.1"), std::string::npos) << err;
  opts_.endpoint = hub_.endpoint();
  auto online = meshlm::hub::pull("acme/tiny", opts_);
  opts_.endpoint = "http://127.0.0.1:1";
  auto res = meshlm::hub::pull("acme/tiny", opts_);
  EXPECT_TRUE(res.used_cache_only);
  EXPECT_EQ(res.snapshot_dir, online.snapshot_dir);
}

TEST_F(HubPull, PinnedCommitWritesNoRefAndSingleFileModel) {
  MockRepo r;
  r.commit = kCommit2;
  r.files["config.json"] = {"{}"};
  r.files["model.safetensors"] = {pattern(777, 9), true};
  r.files["consolidated.safetensors"] = {pattern(700, 8), true};
  r.files["pytorch_model.bin"] = {pattern(70, 7), true};
  hub_.set_repo("acme/single", r);
  opts_.revision = kCommit2;
  auto res = meshlm::hub::pull("acme/single", opts_);
  EXPECT_EQ(res.files, (std::vector<std::string>{"config.json", "model.safetensors"}));
  EXPECT_FALSE(fs::exists(cache_ / "models--acme--single" / "refs"));
}

TEST_F(HubPull, RepositoryWithoutSafetensorsIsExplained) {
  MockRepo r;
  r.commit = kCommit;
  r.files["config.json"] = {"{}"};
  r.files["pytorch_model.bin"] = {pattern(70, 7), true};
  hub_.set_repo("acme/old", r);
  std::string err = expect_error("acme/old");
  EXPECT_NE(err.find("no .safetensors weights (only pytorch_model.bin)"), std::string::npos) << err;
}

TEST_F(HubPull, ResolveModelDir) {
  fs::create_directories(root_ / "local");
  EXPECT_EQ(meshlm::hub::resolve_model_dir((root_ / "local").string(), opts_),
            (root_ / "local").string());
  EXPECT_THROW(meshlm::hub::resolve_model_dir((root_ / "nope").string(), opts_), meshlm::Error);
  std::string dir = meshlm::hub::resolve_model_dir("acme/tiny", opts_);
  EXPECT_TRUE(fs::exists(fs::path(dir) / "config.json"));
}

}  // namespace
