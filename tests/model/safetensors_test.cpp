// Corrupt, truncated and inconsistent safetensors files give tagged errors, never a crash.
#include <filesystem>
#include <fstream>
#include <random>

#include "backend/backend.h"
#include "core/error.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "test_util.h"
#include "../common/temp_dir.h"

namespace meshlm {
namespace {

namespace fs = std::filesystem;

std::string file_bytes(const std::string& header, size_t data_bytes, int64_t declared_len = -1) {
  std::string s;
  uint64_t n = declared_len >= 0 ? uint64_t(declared_len) : header.size();
  for (int i = 0; i < 8; ++i) s.push_back(char((n >> (8 * i)) & 0xff));
  s += header;
  s.append(data_bytes, '\0');
  return s;
}

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("meshlm-st") {}
  void write(const std::string& name, const std::string& bytes) const {
    std::ofstream f(path / name, std::ios::binary);
    f.write(bytes.data(), std::streamsize(bytes.size()));
  }
};

std::string error_of(const std::string& dir) {
  try {
    model::SafetensorsSet::open_dir(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, ValidFileParses) {
  TempDir d;
  d.write("model.safetensors",
          file_bytes(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},"__metadata__":{"format":"pt"}})",
                     32));
  auto set = model::SafetensorsSet::open_dir(d.path.string());
  EXPECT_TRUE(set->has("a"));
  EXPECT_EQ(set->info("b").dtype, WeightType::BF16);
  EXPECT_EQ(set->info("a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_THROW(set->info("c"), Error);
}

TEST(Safetensors, CorruptionsAreTaggedErrors) {
  struct Case {
    const char* what;
    std::string bytes;
    const char* expect;
  };
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::vector<Case> cases = {
      {"header length past end", file_bytes(ok, 8, 1 << 20), "past the end"},
      {"short file", std::string("abc"), "too short"},
      {"truncated data", file_bytes(ok, 4), "past the end"},
      {"overlap", file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "overlap"},
      {"bad json", file_bytes("{not json", 0), "not valid JSON"},
      {"unknown dtype", file_bytes(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype"},
      {"size mismatch", file_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "needs"},
      {"reversed", file_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8), "reversed"},
      {"negative dim", file_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "negative"},
      {"malformed entry", file_bytes(R"({"a":{"dtype":"F32"}})", 0), "malformed"},
  };
  for (const auto& c : cases) {
    TempDir d;
    d.write("model.safetensors", c.bytes);
    std::string err = error_of(d.path.string());
    EXPECT_NE(err.find("[safetensors]"), std::string::npos) << c.what << ": " << err;
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.what << ": " << err;
  }
}

TEST(Safetensors, MissingFilesAndShards) {
  TempDir d;
  EXPECT_NE(error_of(d.path.string()).find("no model.safetensors"), std::string::npos);
  d.write("model.safetensors.index.json", R"({"weight_map":{"a":"model-00001-of-00002.safetensors"}})");
  EXPECT_NE(error_of(d.path.string()).find("missing file"), std::string::npos);
  d.write("model.safetensors.index.json", R"({"weight_map":{"a":"../etc/passwd"}})");
  EXPECT_NE(error_of(d.path.string()).find("outside"), std::string::npos);
  d.write("model.safetensors.index.json",
          R"({"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  d.write("model-00001-of-00002.safetensors", file_bytes(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4));
  d.write("model-00002-of-00002.safetensors", file_bytes(R"({"b":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4));
  auto set = model::SafetensorsSet::open_dir(d.path.string());
  EXPECT_EQ(set->info("b").file_index, 1u);
}

TEST(Safetensors, RandomMutationsNeverCrash) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]}})";
  std::string good = file_bytes(ok, 20);
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string s = good;
    int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; ++e) s[rng() % s.size()] = char(rng() % 256);
    if (rng() % 4 == 0) s.resize(rng() % s.size());
    try {
      model::parse_safetensors_header(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "fuzz", 0);
    } catch (const Error&) {
    }
  }
}

TEST(Weights, WrongShapeDtypeAndMissingTensorAreNamed) {
  REQUIRE_MODEL();
  auto set = model::SafetensorsSet::open_dir(MESHLM_GOLDEN_MODEL);
  auto cfg = model::ModelConfig::from_dir(MESHLM_GOLDEN_MODEL);
  auto be = backend::create("ref", 1);
  auto bad = cfg;
  bad.intermediate = 100;
  try {
    model::load_stage_weights(*set, bad, {0, 1}, *be);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mlp.gate_proj.weight' has shape [768, 256], expected [100, 256]"),
              std::string::npos)
        << e.what();
  }
  bad = cfg;
  bad.qkv_bias = true;
  try {
    model::load_stage_weights(*set, bad, {0, 1}, *be);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'model.layers.0.self_attn.q_proj.bias'"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(model::load_stage_weights(*set, cfg, {3, 2}, *be), Error);
  EXPECT_THROW(model::load_stage_weights(*set, cfg, {0, 5}, *be), Error);
}

}  // namespace
}  // namespace meshlm
