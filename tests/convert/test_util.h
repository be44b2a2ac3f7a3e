// Shared helpers of the convert tests: the test models, sha256, temporary folders.
#pragma once

#include <openssl/evp.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace meshlm::convert::test {

namespace fs = std::filesystem;

inline const std::string kModels = MESHLM_CONVERT_MODELS;
inline const std::string kShared = MESHLM_SHARED_DIR;

inline std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::string buf(size_t(1) << 20, '\0');
  while (f) {
    f.read(buf.data(), std::streamsize(buf.size()));
    EVP_DigestUpdate(ctx, buf.data(), size_t(f.gcount()));
  }
  unsigned char md[32];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, md, &n);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  char h[3];
  for (unsigned i = 0; i < n; ++i) {
    std::snprintf(h, sizeof h, "%02x", md[i]);
    hex += h;
  }
  return hex;
}

// A fresh folder under the build tree, removed at the end of the test.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) : path(fs::path(kModels) / "tmp" / name) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& f) const { return (path / f).string(); }
};

// Why the reference models are missing ("" when they are there).
inline std::string models_missing() {
  if (!fs::exists(kModels + "/.complete")) return "no test models (run the convert_models_setup test first)";
  if (fs::exists(kModels + "/.not-golden")) {
    std::ifstream f(kModels + "/.not-golden");
    std::string why;
    std::getline(f, why);
    return "reference models not built: " + why;
  }
  return "";
}

}  // namespace meshlm::convert::test
