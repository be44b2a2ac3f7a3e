// core/atomic_file.h, which the GGUF and safetensors writers write through: the file appears
// whole at commit() and never before; an abandoned or failed one leaves nothing behind.
#include "core/atomic_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "../common/temp_dir.h"

namespace meshlm {
namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(AtomicFile, AppearsWholeAtCommitOnly) {
  test::TempDir dir("meshlm-atomic");
  const fs::path target = dir.path / "out.bin";
  std::ofstream(target) << "old";
  AtomicFile f(target.string());
  ASSERT_TRUE(f.open()) << f.error();
  ASSERT_TRUE(f.write("hello ", 6));
  ASSERT_TRUE(f.write("world", 5));
  ASSERT_TRUE(f.write(nullptr, 0));
  EXPECT_EQ(read(target), "old");  // the old file stays until commit
  EXPECT_TRUE(fs::exists(f.partial_path()));
  ASSERT_TRUE(f.commit()) << f.error();
  EXPECT_TRUE(f.committed());
  EXPECT_EQ(read(target), "hello world");
  EXPECT_FALSE(fs::exists(f.partial_path()));
}

TEST(AtomicFile, AbandonedFileLeavesNothing) {
  test::TempDir dir("meshlm-atomic");
  const fs::path target = dir.path / "out.bin";
  std::string partial;
  {
    AtomicFile f(target.string());
    ASSERT_TRUE(f.open());
    ASSERT_TRUE(f.write("x", 1));
    partial = f.partial_path();
    EXPECT_TRUE(fs::exists(partial));
  }
  EXPECT_FALSE(fs::exists(partial));
  EXPECT_FALSE(fs::exists(target));
}

TEST(AtomicFile, FailuresNameTheFile) {
  test::TempDir dir("meshlm-atomic");
  AtomicFile missing_dir((dir.path / "no" / "such" / "f.bin").string());
  EXPECT_FALSE(missing_dir.open());
  EXPECT_NE(missing_dir.error().find("cannot create '"), std::string::npos) << missing_dir.error();
  EXPECT_NE(missing_dir.error().find("f.bin.partial"), std::string::npos) << missing_dir.error();

  AtomicFile unopened((dir.path / "u.bin").string());
  EXPECT_FALSE(unopened.write("x", 1));
  EXPECT_FALSE(unopened.commit());
  EXPECT_NE(unopened.error().find("u.bin.partial"), std::string::npos) << unopened.error();

  // The target is a non-empty folder: the rename fails, and the partial file is gone.
  const fs::path blocked = dir.path / "blocked";
  fs::create_directories(blocked / "inside");
  AtomicFile f(blocked.string());
  ASSERT_TRUE(f.open());
  ASSERT_TRUE(f.write("x", 1));
  EXPECT_FALSE(f.commit());
  EXPECT_NE(f.error().find("cannot rename"), std::string::npos) << f.error();
  EXPECT_FALSE(fs::exists(f.partial_path()));
  EXPECT_TRUE(fs::is_directory(blocked / "inside"));
}

}  // namespace
}  // namespace meshlm
