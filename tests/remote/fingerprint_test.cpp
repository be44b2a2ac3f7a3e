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

// An MLX folder is a folder like any other to the fingerprint: config.json's bytes (so its
// quantization: bits, group size, per-module overrides) and every tensor's name, dtype and shape,
// the U32 codes' and the .scales / .biases tensors' included.
TEST(Fingerprint, CoversAnMlxFoldersQuantization) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("meshlm_fp_mlx_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const std::string& config, const std::string& header) {
    std::ofstream(dir / "config.json") << config;
    std::ofstream st(dir / "model.safetensors", std::ios::binary);
    uint64_t n = header.size();
    st.write(reinterpret_cast<const char*>(&n), 8);
    st << header << std::string(64, '\0');
  };
  const std::string q4 =
      R"({"model_type":"qwen3","quantization":{"group_size":64,"bits":4,"mode":"affine"}})";
  const std::string tensors =
      R"({"w.weight":{"dtype":"U32","shape":[2,8],"data_offsets":[0,64]},)"
      R"("w.scales":{"dtype":"BF16","shape":[2,1],"data_offsets":[0,4]},)"
      R"("w.biases":{"dtype":"BF16","shape":[2,1],"data_offsets":[4,8]}})";
  write(q4, tensors);
  const std::string fp = fingerprint(dir.string());
  // Bits, group size or an override in the quantization object.
  write(R"({"model_type":"qwen3","quantization":{"group_size":64,"bits":8,"mode":"affine"}})",
        tensors);
  EXPECT_NE(fingerprint(dir.string()), fp);
  write(R"({"model_type":"qwen3","quantization":{"group_size":32,"bits":4,"mode":"affine"}})",
        tensors);
  EXPECT_NE(fingerprint(dir.string()), fp);
  write(R"({"model_type":"qwen3","quantization":{"group_size":64,"bits":4,"mode":"affine","w":false}})",
        tensors);
  EXPECT_NE(fingerprint(dir.string()), fp);
  // The scales' dtype, a biases tensor gone.
  std::string f16 = tensors;
  f16.replace(f16.find("BF16"), 4, "F16");
  write(q4, f16);
  EXPECT_NE(fingerprint(dir.string()), fp);
  write(q4, R"({"w.weight":{"dtype":"U32","shape":[2,8],"data_offsets":[0,64]},)"
            R"("w.scales":{"dtype":"BF16","shape":[2,1],"data_offsets":[0,4]}})");
  EXPECT_NE(fingerprint(dir.string()), fp);
  write(q4, tensors);
  EXPECT_EQ(fingerprint(dir.string()), fp);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace meshlm::remote
