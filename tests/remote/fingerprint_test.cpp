// The model fingerprint (remote/fingerprint.h): what changes it and what does not.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "remote/fingerprint.h"

namespace meshlm::remote {

namespace {

TEST(Fingerprint, DependsOnConfigAndTensorIndex) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("meshlm_fp_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const std::string& config, const std::string& header) {
    std::ofstream(dir / "config.json") << config;
    std::ofstream st(dir / "model.safetensors", std::ios::binary);
    uint64_t n = header.size();
    st.write(reinterpret_cast<const char*>(&n), 8);
    st << header << std::string(16, '\0');
  };
  const std::string h1 =
      R"({"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{}})";
  write(R"({"model_type":"qwen3"})", h1);
  std::string fp1 = fingerprint(dir.string());
  EXPECT_EQ(fp1.size(), 64u);
  EXPECT_EQ(fingerprint(dir.string()), fp1);
  write(R"({"model_type":"qwen3"})",
        R"({"a.weight":{"dtype":"BF16","shape":[2,4],"data_offsets":[0,16]}})");
  EXPECT_NE(fingerprint(dir.string()), fp1);
  write(R"({"model_type":"llama"})", h1);
  EXPECT_NE(fingerprint(dir.string()), fp1);
  fs::remove_all(dir);
  EXPECT_THROW(fingerprint(dir.string()), Error);
}

}  // namespace
}  // namespace meshlm::remote
