// SafetensorsWriter / ShardedSafetensorsWriter: what they write is read back here with a parser
// written from the format description (not the engine's reader), and checked field by field.
#include "model/safetensors_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/half.h"

namespace meshlm::model {
namespace {

namespace fs = std::filesystem;

struct ParsedFile {
  uint64_t header_len = 0;
  std::string header_text;
  nlohmann::json header;
  std::vector<uint8_t> data;  // everything after the header
};

std::vector<uint8_t> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

ParsedFile parse(const fs::path& p) {
  std::vector<uint8_t> bytes = read_all(p);
  ParsedFile out;
  EXPECT_GE(bytes.size(), 8u);
  for (int i = 0; i < 8; ++i) out.header_len |= uint64_t(bytes[size_t(i)]) << (8 * i);
  EXPECT_LE(8 + out.header_len, bytes.size());
  out.header_text.assign(bytes.begin() + 8, bytes.begin() + 8 + long(out.header_len));
  out.header = nlohmann::json::parse(out.header_text);
  out.data.assign(bytes.begin() + 8 + long(out.header_len), bytes.end());
  return out;
}

std::vector<std::byte> pattern_bytes(size_t n, uint8_t salt) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(uint8_t(i * 31 + salt));
  return v;
}

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("meshlm_stw_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(WriterTest, SingleFileHeaderOffsetsAndData) {
  std::vector<TensorSpec> specs = {
      {"model.embed_tokens.weight", WeightType::F32, {5, 3}},
      {"scalar", WeightType::BF16, {}},
      {"empty", WeightType::F16, {0, 4}},
      {"model.norm.weight", WeightType::BF16, {7}},
      {"h", WeightType::F16, {2, 3, 2}},
  };
  fs::path path = dir_ / "model.safetensors";
  std::vector<std::vector<std::byte>> payload;
  {
    SafetensorsWriter w(path.string(), specs, {{"format", "pt"}});
    EXPECT_EQ(w.data_bytes(), 60u + 2 + 0 + 14 + 24);
    for (size_t i = 0; i < specs.size(); ++i) {
      payload.push_back(pattern_bytes(specs[i].nbytes(), uint8_t(i)));
      const auto& p = payload.back();
      // Write in uneven pieces (1 byte, then the rest) to exercise streaming.
      if (p.empty()) continue;
      w.append(specs[i].name, std::span(p).first(1));
      w.append(specs[i].name, std::span(p).subspan(1));
    }
    EXPECT_TRUE(fs::exists(path.string() + ".partial"));
    EXPECT_FALSE(fs::exists(path));
    w.finish();
  }
  ASSERT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path.string() + ".partial"));

  ParsedFile f = parse(path);
  EXPECT_EQ(f.header_len % 8, 0u);
  EXPECT_EQ(f.header["__metadata__"], nlohmann::json({{"format", "pt"}}));
  EXPECT_EQ(f.header.size(), specs.size() + 1);
  uint64_t expected_offset = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(specs[i].name);
    ASSERT_TRUE(f.header.contains(specs[i].name));
    const auto& h = f.header[specs[i].name];
    EXPECT_EQ(h["dtype"].get<std::string>(), std::string(formats::name(specs[i].dtype)));
    EXPECT_EQ(h["shape"].get<std::vector<int64_t>>(), specs[i].shape);
    auto off = h["data_offsets"].get<std::vector<uint64_t>>();
    ASSERT_EQ(off.size(), 2u);
    EXPECT_EQ(off[0], expected_offset);  // contiguous, in declared order
    EXPECT_EQ(off[1] - off[0], specs[i].nbytes());
    ASSERT_LE(off[1], f.data.size());
    if (!payload[i].empty())  // memcmp of zero bytes may still not take null pointers
      EXPECT_EQ(0, std::memcmp(f.data.data() + off[0], payload[i].data(), payload[i].size()));
    expected_offset = off[1];
  }
  EXPECT_EQ(expected_offset, f.data.size());  // nothing after the last tensor
}

TEST_F(WriterTest, HeaderIsPaddedWithSpaces) {
  for (int len = 1; len <= 9; ++len) {
    fs::path path = dir_ / ("pad" + std::to_string(len) + ".safetensors");
    SafetensorsWriter w(path.string(), {{std::string(size_t(len), 'x'), WeightType::F32, {1}}});
    float one = 1.0f;
    w.append(std::string(size_t(len), 'x'), std::as_bytes(std::span(&one, 1)));
    w.finish();
    ParsedFile f = parse(path);
    EXPECT_EQ(f.header_len % 8, 0u);
    size_t end = f.header_text.find_last_of('}');
    EXPECT_EQ(f.header_text.substr(end + 1), std::string(f.header_text.size() - end - 1, ' '));
    EXPECT_FALSE(f.header.contains("__metadata__"));  // none given, none written
    ASSERT_EQ(f.data.size(), 4u);
    float back;
    std::memcpy(&back, f.data.data(), 4);
    EXPECT_EQ(back, 1.0f);
  }
}

TEST_F(WriterTest, RejectsMisuse) {
  fs::path path = dir_ / "bad.safetensors";
  EXPECT_THROW(SafetensorsWriter(path.string(), {{"a", WeightType::F32, {1}}, {"a", WeightType::F32, {1}}}),
               Error);
  EXPECT_THROW(SafetensorsWriter(path.string(), {{"", WeightType::F32, {1}}}), Error);
  EXPECT_THROW(SafetensorsWriter(path.string(), {{"__metadata__", WeightType::F32, {1}}}), Error);
  EXPECT_THROW(SafetensorsWriter(path.string(), {{"neg", WeightType::F32, {2, -1}}}), Error);
  EXPECT_THROW(
      SafetensorsWriter((dir_ / "no/such/dir/x.safetensors").string(), {{"a", WeightType::F32, {1}}}),
      Error);
  {
    SafetensorsWriter w(path.string(), {{"a", WeightType::F32, {2}}, {"b", WeightType::BF16, {3}}});
    auto four = pattern_bytes(4, 0), twelve = pattern_bytes(12, 0);
    EXPECT_THROW(w.append("b", four), Error);    // out of order
    EXPECT_THROW(w.append("a", twelve), Error);  // past the end of "a"
    w.append("a", four);
    EXPECT_THROW(w.finish(), Error);  // "a" incomplete
    w.append("a", four);
    w.append("b", pattern_bytes(6, 1));
    EXPECT_THROW(w.append("b", four), Error);  // after everything
    w.finish();
    w.finish();  // idempotent
  }
  EXPECT_TRUE(fs::exists(path));
  {
    fs::path unfinished = dir_ / "unfinished.safetensors";
    {
      SafetensorsWriter w(unfinished.string(), {{"a", WeightType::F32, {2}}});
      EXPECT_TRUE(fs::exists(unfinished.string() + ".partial"));
    }
    EXPECT_FALSE(fs::exists(unfinished.string() + ".partial"));  // removed, not left half-written
    EXPECT_FALSE(fs::exists(unfinished));
  }
}

TEST(EncodeF32, MatchesDtypeConversions) {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -2.5f, 3.14159265f, 1e-8f, 65504.0f, 1e30f, 0.1f};
  std::vector<std::byte> f32(v.size() * 4), b16(v.size() * 2), h16(v.size() * 2);
  encode_f32(v, WeightType::F32, f32.data());
  encode_f32(v, WeightType::BF16, b16.data());
  encode_f32(v, WeightType::F16, h16.data());
  for (size_t i = 0; i < v.size(); ++i) {
    float f;
    uint16_t b, h;
    std::memcpy(&f, f32.data() + 4 * i, 4);
    std::memcpy(&b, b16.data() + 2 * i, 2);
    std::memcpy(&h, h16.data() + 2 * i, 2);
    EXPECT_EQ(std::memcmp(&f, &v[i], 4), 0);
    EXPECT_EQ(b, f32_to_bf16(v[i]));
    EXPECT_EQ(h, f32_to_f16(v[i]));
  }
  // Round to nearest even on the upper 16 bits: 1 + 2^-8 (exactly half an ulp) rounds to 1.
  float tie = 1.0f + 1.0f / 256.0f;
  std::byte out[2];
  encode_f32(std::span(&tie, 1), WeightType::BF16, out);
  uint16_t bits;
  std::memcpy(&bits, out, 2);
  EXPECT_EQ(bits, 0x3f80);
}

TEST(SplitIntoShards, BalancedContiguousNonEmpty) {
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 10; ++i) specs.push_back({"t" + std::to_string(i), WeightType::F32, {100}});
  specs.push_back({"big", WeightType::F32, {1000}});  // 4000 bytes at the end
  for (int n : {1, 2, 3, 4, 11}) {
    SCOPED_TRACE(n);
    auto groups = split_into_shards(specs, n);
    ASSERT_EQ(groups.size(), size_t(n));
    std::vector<std::string> order;
    for (const auto& g : groups) {
      EXPECT_FALSE(g.empty());
      for (const auto& t : g) order.push_back(t.name);
    }
    ASSERT_EQ(order.size(), specs.size());
    for (size_t i = 0; i < specs.size(); ++i) EXPECT_EQ(order[i], specs[i].name);
  }
  auto two = split_into_shards(specs, 2);
  EXPECT_EQ(two[1].size(), 1u);  // 4000 of 8000 bytes before "big": the cut falls just before it
  EXPECT_EQ(two[1][0].name, "big");
  EXPECT_THROW(split_into_shards(specs, 0), Error);
  EXPECT_THROW(split_into_shards(specs, 12), Error);
  EXPECT_EQ(shard_file_name(0, 3), "model-00001-of-00003.safetensors");
}

TEST_F(WriterTest, ShardedWritesIndexAndShards) {
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 7; ++i)
    specs.push_back({"layer." + std::to_string(i), i % 2 ? WeightType::BF16 : WeightType::F32, {3, i + 1}});
  std::map<std::string, std::vector<std::byte>> payload;
  uint64_t total = 0;
  {
    ShardedSafetensorsWriter w(dir_.string(), specs, 3, {{"format", "pt"}});
    EXPECT_EQ(w.n_shards(), 3);
    for (size_t i = 0; i < specs.size(); ++i) {
      payload[specs[i].name] = pattern_bytes(specs[i].nbytes(), uint8_t(i + 7));
      w.append(specs[i].name, payload[specs[i].name]);
      total += specs[i].nbytes();
    }
    EXPECT_EQ(w.total_bytes(), total);
    w.finish();
  }
  EXPECT_FALSE(fs::exists(dir_ / "model.safetensors"));
  std::ifstream idx_file(dir_ / "model.safetensors.index.json");
  ASSERT_TRUE(idx_file.good());
  nlohmann::json idx = nlohmann::json::parse(idx_file);
  EXPECT_EQ(idx["metadata"]["total_size"].get<uint64_t>(), total);
  ASSERT_EQ(idx["weight_map"].size(), specs.size());
  std::set<std::string> files;
  for (const auto& [name, file] : idx["weight_map"].items()) files.insert(file.get<std::string>());
  EXPECT_EQ(files, (std::set<std::string>{"model-00001-of-00003.safetensors",
                                          "model-00002-of-00003.safetensors",
                                          "model-00003-of-00003.safetensors"}));
  size_t seen = 0;
  for (const std::string& file : files) {
    ParsedFile f = parse(dir_ / file);
    EXPECT_EQ(f.header["__metadata__"]["format"], "pt");
    for (const auto& [name, h] : f.header.items()) {
      if (name == "__metadata__") continue;
      ++seen;
      EXPECT_EQ(idx["weight_map"][name], file) << name;
      auto off = h["data_offsets"].get<std::vector<uint64_t>>();
      ASSERT_EQ(off[1] - off[0], payload.at(name).size());
      EXPECT_EQ(0, std::memcmp(f.data.data() + off[0], payload.at(name).data(), off[1] - off[0]));
    }
  }
  EXPECT_EQ(seen, specs.size());
}

TEST_F(WriterTest, OneShardIsPlainModelFile) {
  std::vector<TensorSpec> specs = {{"a", WeightType::F32, {4}}, {"b", WeightType::BF16, {4}}};
  ShardedSafetensorsWriter w(dir_.string(), specs, 1);
  w.append("a", pattern_bytes(16, 1));
  EXPECT_THROW(w.append("zzz", pattern_bytes(8, 2)), Error);
  w.append("b", pattern_bytes(8, 2));
  w.finish();
  EXPECT_TRUE(fs::exists(dir_ / "model.safetensors"));
  EXPECT_FALSE(fs::exists(dir_ / "model.safetensors.index.json"));
  ParsedFile f = parse(dir_ / "model.safetensors");
  EXPECT_EQ(f.data.size(), 24u);
}

}  // namespace
}  // namespace meshlm::model
