// fingerprint(model_dir): see fingerprint.h.
#include "remote/fingerprint.h"

#include <openssl/evp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hex.h"
#include "formats/gguf.h"
#include "model/model_files.h"

namespace meshlm::remote {

namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("fingerprint", "cannot read " + path.string());
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() > max_bytes) throw Error("fingerprint", path.string() + " is too large");
  return bytes;
}

// The JSON header of a .safetensors file: u64 little-endian length, then that many bytes.
nlohmann::json safetensors_header(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("fingerprint", "cannot read " + path.string());
  uint8_t len_bytes[8];
  if (!in.read(reinterpret_cast<char*>(len_bytes), 8)) {
    throw Error("fingerprint", path.string() + " is shorter than a safetensors header");
  }
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len |= uint64_t{len_bytes[i]} << (8 * i);
  if (len > (uint64_t{100} << 20)) {
    throw Error("fingerprint", path.string() + ": safetensors header of " + std::to_string(len) +
                                   " bytes is too large");
  }
  std::string text(len, '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(len))) {
    throw Error("fingerprint", path.string() + ": safetensors header extends past end of file");
  }
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) throw Error("fingerprint", path.string() + ": header is not a JSON object");
  return j;
}

// A GGUF model's identity: every part's header (metadata and tensor table), not its data.
std::string gguf_identity(const std::string& path) {
  const formats::GgufModel m = formats::GgufModel::open(path);
  std::string data = "gguf";
  data.push_back('\0');
  for (const formats::GgufFile& part : m.parts())
    data.append(reinterpret_cast<const char*>(part.bytes().data()), size_t(part.data_offset()));
  return data;
}

// A Hugging Face folder's identity: config.json and every tensor's name, dtype and shape.
std::string folder_identity(const std::string& model_dir) {
  fs::path dir(model_dir);
  std::string data = read_file(dir / "config.json", 16 << 20);
  data.push_back('\0');

  std::vector<std::string> tensors;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".safetensors") continue;
    auto header = safetensors_header(entry.path());
    for (const auto& [name, info] : header.items()) {
      if (name == "__metadata__") continue;
      if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") ||
          !info["dtype"].is_string() || !info["shape"].is_array()) {
        throw Error("fingerprint", entry.path().string() + ": bad entry for tensor '" + name + "'");
      }
      std::string line = name + '\t' + info["dtype"].get<std::string>() + '\t' +
                         info["shape"].dump() + '\n';
      tensors.push_back(std::move(line));
    }
  }
  if (ec) throw Error("fingerprint", "cannot list " + model_dir + ": " + ec.message());
  std::sort(tensors.begin(), tensors.end());
  for (const auto& t : tensors) data += t;
  return data;
}

}  // namespace

std::string fingerprint(const std::string& model_dir) {
  const std::string data = model::detect_model_format(model_dir) == model::ModelFormat::Gguf
                               ? gguf_identity(model_dir)
                               : folder_identity(model_dir);
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr)) {
    throw Error("fingerprint", "SHA-256 failed");
  }
  return to_hex(std::span<const uint8_t>(digest, len));
}

}  // namespace meshlm::remote
