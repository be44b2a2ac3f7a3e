// Model sync messages: round trips, and every decoder rejects truncated, padded and invalid
// payloads with Error("protocol").
#include <gtest/gtest.h>

#include <functional>

#include "remote/model_sync.h"
#include "transport/messages.h"

namespace meshlm::remote {

using namespace transport;
namespace {

void expect_protocol_error(const std::function<void()>& f, const std::string& what = "") {
  try {
    f();
    ADD_FAILURE() << "no error (expected '" << what << "')";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "protocol") << e.what();
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

ManifestMsg sample_manifest() {
  ManifestMsg m;
  m.fingerprint = std::string(64, 'a');
  m.config_json = R"({"model_type": "qwen3"})";
  m.tensors.push_back({"model.norm.weight", "F32", {64}, 256, {1, 2}});
  m.tensors.push_back({"lm_head.weight", "BF16", {256, 64}, 256 * 64 * 2, {3, 4}});
  m.tensors.push_back({"empty", "F16", {0, 5}, 0, {5, 6}});
  return m;
}

// A GGUF model's manifest: part headers instead of config.json, block-quantized entries; and an
// MLX folder's U32 codes.
ManifestMsg sample_gguf_manifest() {
  ManifestMsg m;
  m.fingerprint = std::string(64, 'b');
  m.format = SyncFormat::Gguf;
  m.gguf_parts.push_back({std::string("GGUF\x03\0\0\0", 8) + "rest of a header", 4096});
  m.gguf_parts.push_back({"GGUF second part", 1 << 20});
  m.tensors.push_back({"blk.0.attn_q.weight", "Q4_K", {256, 512}, 256 * 2 * 144, {1, 2}});
  m.tensors.push_back({"blk.0.ffn_down.weight", "Q6_K", {512, 256}, 512 * 210, {3, 4}});
  m.tensors.push_back({"blk.0.attn_norm.weight", "F32", {512}, 2048, {5, 6}});
  m.tensors.push_back({"rope_freqs.weight", "F32", {32}, 128, {7, 8}});
  return m;
}

// Every strict prefix and the payload plus a trailing byte must throw.
void expect_truncations_rejected(const std::vector<uint8_t>& good,
                                 const std::function<void(std::span<const uint8_t>)>& decode) {
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_THROW(decode({good.data(), n}), Error) << "prefix of " << n << " bytes";
  }
  auto longer = good;
  longer.push_back(0);
  EXPECT_THROW(decode(longer), Error);
}

TEST(SyncMessages, RoundTrips) {
  ManifestMsg m = sample_manifest();
  ManifestMsg d = decode_manifest(encode_manifest(m));
  EXPECT_EQ(d.fingerprint, m.fingerprint);
  EXPECT_EQ(d.config_json, m.config_json);
  ASSERT_EQ(d.tensors.size(), 3u);
  EXPECT_EQ(d.tensors[1].name, "lm_head.weight");
  EXPECT_EQ(d.tensors[1].shape, (std::vector<int64_t>{256, 64}));
  EXPECT_EQ(d.tensors[1].hash, (Hash128{3, 4}));

  auto r = decode_manifest_request(encode_manifest_request({4, 8}));
  EXPECT_EQ(r.layers.begin, 4);
  EXPECT_EQ(r.layers.end, 8);

  TensorRequestMsg t{{{"a", 0}, {"b", 77}}};
  auto dt = decode_tensor_request(encode_tensor_request(t));
  ASSERT_EQ(dt.ranges.size(), 2u);
  EXPECT_EQ(dt.ranges[1].name, "b");
  EXPECT_EQ(dt.ranges[1].offset, 77u);

  auto head = encode_tensor_data_head({3, 1000});
  EXPECT_EQ(head.size(), kTensorDataHeadSize);
  std::vector<uint8_t> payload = head;
  payload.insert(payload.end(), {9, 8, 7});
  std::span<const uint8_t> data;
  auto h = decode_tensor_data(payload, data);
  EXPECT_EQ(h.range, 3u);
  EXPECT_EQ(h.offset, 1000u);
  EXPECT_EQ(std::vector<uint8_t>(data.begin(), data.end()), (std::vector<uint8_t>{9, 8, 7}));

  LoadMsg l{"", 4, 8, 2048, "", true};
  EXPECT_TRUE(decode_load(encode_load(l)).sync);

  ManifestMsg g = sample_gguf_manifest();
  ManifestMsg dg = decode_manifest(encode_manifest(g));
  EXPECT_EQ(dg.format, SyncFormat::Gguf);
  EXPECT_EQ(dg.config_json, "");
  ASSERT_EQ(dg.gguf_parts.size(), 2u);
  EXPECT_EQ(dg.gguf_parts[0].header, g.gguf_parts[0].header);
  EXPECT_EQ(dg.gguf_parts[1].file_size, uint64_t{1} << 20);
  ASSERT_EQ(dg.tensors.size(), 4u);
  EXPECT_EQ(dg.tensors[0].dtype, "Q4_K");
  EXPECT_EQ(dg.tensors[1].nbytes, 512u * 210);

  ManifestMsg mlx = sample_manifest();
  mlx.tensors.push_back({"model.layers.0.mlp.down_proj.weight", "U32", {64, 16}, 64 * 16 * 4, {9, 9}});
  mlx.tensors.push_back({"model.layers.0.mlp.down_proj.scales", "BF16", {64, 2}, 64 * 2 * 2, {9, 8}});
  EXPECT_EQ(decode_manifest(encode_manifest(mlx)).tensors[3].dtype, "U32");
}

TEST(SyncMessages, TruncatedAndPaddedPayloadsAreRejected) {
  expect_truncations_rejected(encode_manifest(sample_manifest()),
                              [](auto p) { decode_manifest(p); });
  expect_truncations_rejected(encode_manifest(sample_gguf_manifest()),
                              [](auto p) { decode_manifest(p); });
  expect_truncations_rejected(encode_manifest_request({1, 2}),
                              [](auto p) { decode_manifest_request(p); });
  expect_truncations_rejected(encode_tensor_request({{{"x.weight", 5}}}),
                              [](auto p) { decode_tensor_request(p); });
  expect_truncations_rejected(encode_load({"", 1, 2, 16, "", true}),
                              [](auto p) { decode_load(p); });
  auto head = encode_tensor_data_head({0, 0});
  for (size_t n = 0; n <= head.size(); ++n) {  // the head alone has no data: rejected too
    std::span<const uint8_t> data;
    EXPECT_THROW(decode_tensor_data({head.data(), n}, data), Error);
  }
}

TEST(SyncMessages, InvalidFieldsAreRejected) {
  auto bad = [](const std::function<void(ManifestMsg&)>& edit, const std::string& what) {
    ManifestMsg m = sample_manifest();
    edit(m);
    expect_protocol_error([&] { decode_manifest(encode_manifest(m)); }, what);
  };
  bad([](ManifestMsg& m) { m.tensors[0].dtype = "I64"; }, "unsupported dtype");
  bad([](ManifestMsg& m) { m.tensors[0].shape = {-64}; }, "negative dimension");
  bad([](ManifestMsg& m) { m.tensors[0].nbytes = 255; }, "shape and dtype make 256");
  bad([](ManifestMsg& m) { m.tensors[1].name = m.tensors[0].name; }, "listed twice");
  bad([](ManifestMsg& m) { m.tensors[0].name = ""; }, "without a name");
  bad([](ManifestMsg& m) { m.tensors[0].shape = {1 << 30, 1 << 30, 1 << 30}; }, "impossibly large");
  bad([](ManifestMsg& m) { m.tensors[0].shape = std::vector<int64_t>(9, 1); }, "exceeds");
  auto bad_gguf = [](const std::function<void(ManifestMsg&)>& edit, const std::string& what) {
    ManifestMsg m = sample_gguf_manifest();
    edit(m);
    expect_protocol_error([&] { decode_manifest(encode_manifest(m)); }, what);
  };
  bad_gguf([](ManifestMsg& m) { m.tensors[0].shape = {256, 500}; }, "not whole blocks");
  bad_gguf([](ManifestMsg& m) { m.tensors[1].nbytes += 1; }, "shape and dtype make");
  bad_gguf([](ManifestMsg& m) { m.tensors[0].dtype = "Q4_K_M"; }, "unsupported dtype");
  bad_gguf([](ManifestMsg& m) { m.gguf_parts.clear(); }, "needs part headers");
  bad_gguf([](ManifestMsg& m) { m.config_json = "{}"; }, "needs part headers and no config");
  bad_gguf([](ManifestMsg& m) { m.gguf_parts[0].header = "GGML"; }, "does not start with GGUF");
  bad_gguf([](ManifestMsg& m) { m.gguf_parts[1].file_size = 3; }, "a GGUF part of 3 bytes");
  bad_gguf([](ManifestMsg& m) { m.format = static_cast<SyncFormat>(7); }, "unknown model format");
  bad([](ManifestMsg& m) { m.gguf_parts.push_back({"GGUF", 4}); }, "safetensors manifest with GGUF");
  bad([](ManifestMsg& m) { m.tensors[0].dtype = "U8"; }, "unsupported dtype");
  expect_protocol_error(
      [] {
        decode_manifest_request(encode_manifest_request({5, 5}));
      },
      "layer range");
  expect_protocol_error(
      [] {
        decode_manifest_request(encode_manifest_request({-1, 5}));
      },
      "layer range");
  expect_protocol_error([] { decode_tensor_request(encode_tensor_request({})); },
                        "without tensors");
  // A count that claims more entries than the payload could hold.
  PayloadWriter w;
  w.u64(uint64_t{1} << 40);
  expect_protocol_error([&] { decode_tensor_request(w.bytes()); }, "count");
  PayloadWriter w2;
  w2.str(std::string(64, 'a'));
  w2.u32(0);
  w2.str("{}");
  w2.u64(0);
  w2.u64(1000000);
  expect_protocol_error([&] { decode_manifest(w2.bytes()); }, "count");
  PayloadWriter w3;  // a tensor name longer than the limit
  w3.u64(1);
  w3.str(std::string(kMaxTensorName + 1, 'x'));
  w3.u64(0);
  expect_protocol_error([&] { decode_tensor_request(w3.bytes()); }, "too long");
  // Garbage of every small length.
  std::vector<uint8_t> junk;
  for (int i = 0; i < 64; ++i) {
    junk.push_back(static_cast<uint8_t>(0xA5 ^ (i * 37)));
    EXPECT_THROW(decode_manifest(junk), Error);
    EXPECT_THROW(decode_tensor_request(junk), Error);
  }
}

TEST(SyncMessages, FingerprintsMustBeHex) {
  EXPECT_TRUE(is_hex_fingerprint(std::string(64, 'f')));
  EXPECT_FALSE(is_hex_fingerprint(std::string(63, 'f')));
  EXPECT_FALSE(is_hex_fingerprint(std::string(64, 'F')));
  EXPECT_FALSE(is_hex_fingerprint("../" + std::string(61, 'a')));
  EXPECT_FALSE(is_hex_fingerprint(""));
}

TEST(SyncMessages, StreamHashEqualsOneShotHash) {
  std::vector<uint8_t> bytes(100000);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 131 + 7);
  StreamHash s;
  s.update({bytes.data(), 1});
  s.update({bytes.data() + 1, 4095});
  s.update({bytes.data() + 4096, bytes.size() - 4096});
  EXPECT_EQ(s.digest(), hash_bytes(bytes));
  EXPECT_NE(hash_bytes({bytes.data(), 10}), hash_bytes({bytes.data(), 11}));
}

}  // namespace
}  // namespace meshlm::remote
