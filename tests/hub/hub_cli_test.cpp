// End to end: the built `meshlm pull` binary against the mock hub (HF_ENDPOINT, HF_HUB_CACHE).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "mock_hub.h"

namespace fs = std::filesystem;
using meshlm::hub::test::MockHub;
using meshlm::hub::test::MockRepo;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class PullCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/meshlm_pull_cliXXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    MockRepo r;
    r.commit = "89abcdef0123456789abcdef0123456789abcdef";
    r.files["config.json"] = {"{\"hidden_size\":8}"};
    r.files["tokenizer.json"] = {"{}"};
    r.files["model.safetensors"] = {std::string(300000, 'w'), true};
    r.files["pytorch_model.bin"] = {std::string(1000, 'b'), true};
    hub_.set_repo("acme/tiny", r);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Runs `meshlm <args>` with the mock as the hub; returns the exit status.
  int run(const std::string& args, const std::string& extra_env = "") {
    std::string cmd = "env -u HF_TOKEN -u HF_HUB_OFFLINE HF_HOME='" + (root_ / "home").string() +
                      "' HF_ENDPOINT='" + hub_.endpoint() + "' HF_HUB_CACHE='" +
                      (root_ / "cache").string() + "' " + extra_env + " '" + MESHLM_BINARY + "' " +
                      args + " >'" + (root_ / "out").string() + "' 2>'" + (root_ / "err").string() +
                      "'";
    int rc = std::system(cmd.c_str());
    out_ = slurp(root_ / "out");
    err_ = slurp(root_ / "err");
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }

  MockHub hub_;
  fs::path root_;
  std::string out_, err_;
};

TEST_F(PullCli, PullsPrintsSnapshotAndReusesCache) {
  ASSERT_EQ(run("pull acme/tiny"), 0) << err_;
  fs::path snap =
      root_ / "cache/models--acme--tiny/snapshots/89abcdef0123456789abcdef0123456789abcdef";
  EXPECT_EQ(out_, snap.string() + "\n");
  EXPECT_TRUE(fs::is_symlink(snap / "model.safetensors"));
  EXPECT_EQ(fs::file_size(snap / "model.safetensors"), 300000u);
  EXPECT_FALSE(fs::exists(snap / "pytorch_model.bin"));
  EXPECT_NE(err_.find("model.safetensors done"), std::string::npos) << err_;  // progress, not a TTY
  EXPECT_EQ(hub_.count("", "", "pytorch_model.bin"), 0u);

  hub_.clear_requests();
  ASSERT_EQ(run("pull acme/tiny"), 0) << err_;
  EXPECT_NE(err_.find("already in the cache"), std::string::npos) << err_;
  EXPECT_EQ(hub_.count("cdn", "", ""), 0u);

  ASSERT_EQ(run("pull acme/tiny", "HF_HUB_OFFLINE=1 HF_ENDPOINT=http://127.0.0.1:1"), 0) << err_;
  EXPECT_EQ(out_, snap.string() + "\n");
  EXPECT_NE(err_.find("from the cache"), std::string::npos) << err_;
}

TEST_F(PullCli, ErrorsAreMessagesAndExitStatusOne) {
  EXPECT_EQ(run("pull acme/tiny --revision nope"), 1);
  EXPECT_NE(err_.find("revision 'nope' not found in acme/tiny"), std::string::npos) << err_;
  EXPECT_EQ(out_, "");
  EXPECT_EQ(run("pull ../../etc"), 1);
  EXPECT_NE(err_.find("invalid model id"), std::string::npos) << err_;
  EXPECT_EQ(run("pull acme/tiny", "HF_ENDPOINT=http://127.0.0.1:1"), 1);
  EXPECT_NE(err_.find("cannot reach"), std::string::npos) << err_;
  EXPECT_EQ(run("pull"), 106);  // CLI11: required argument missing
}

}  // namespace
