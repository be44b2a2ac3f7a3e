// Frame and message encode/decode: round trips and every malformed case the decoders must refuse.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "formats/activation_type.h"
#include "transport/frame.h"
#include "transport/messages.h"

namespace meshlm::transport {
namespace {

ForwardMsg sample_forward() {
  ForwardMsg m;
  m.id = 42;
  m.chunks = {{7, 0, 3, true, false}, {9, 5, 1, true, true}};
  m.chunks[0].top_logits = 40;
  m.chunks[0].top_log_z = true;
  m.tokens = {1, 2, 3, 4};
  runtime::SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.seed = 1234;
  p.has_seed = true;
  p.top_logprobs = 3;
  p.logprobs = true;
  m.new_sequences = {{7, p}};
  m.return_logits = true;
  m.masks = {{9, std::make_shared<runtime::TokenMask>(runtime::TokenMask{0x35, 1ull << 63})}};
  using K = model::KvOp::Kind;
  m.kv_ops = {{K::DropAll, 0, 0, 0, 0}, {K::Drop, 0, 12, 0, 0}, {K::Restore, 7, 3, 0, 32},
              {K::Save, 9, 13, 32, 32}};
  m.stage_us = {120, 95};
  m.stage_queue_us = {3, 4};
  m.stage_send_us = {40, 50};
  m.hidden_dim = 3;
  for (int i = 0; i < 12; ++i) m.hidden.push_back(0.5f * i - 1.0f);
  return m;
}

template <typename F>
void expect_protocol_error(F&& f, const std::string& needle = "") {
  try {
    f();
    FAIL() << "expected Error(\"protocol\", ...)";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "protocol") << e.what();
    if (!needle.empty()) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

TEST(Frame, HeaderRoundTrip) {
  auto bytes = encode_frame(FrameType::Result, std::vector<uint8_t>{1, 2, 3});
  ASSERT_EQ(bytes.size(), kFrameHeaderSize + 3);
  EXPECT_EQ(std::memcmp(bytes.data(), "MLMF", 4), 0);  // magic reads as text on the wire
  Frame f = decode_frame(bytes);
  EXPECT_EQ(f.type(), FrameType::Result);
  EXPECT_EQ(f.header.version, kProtocolVersion);
  EXPECT_EQ(f.payload, (std::vector<uint8_t>{1, 2, 3}));
}

TEST(Frame, MalformedHeaders) {
  auto good = encode_frame(FrameType::Ping, encode_u64(5));
  expect_protocol_error([&] { decode_frame(std::span(good).first(10)); }, "truncated header");
  expect_protocol_error([&] { decode_frame(std::span(good).first(good.size() - 1)); }, "truncated");
  auto longer = good;
  longer.push_back(0);
  expect_protocol_error([&] { decode_frame(longer); }, "trailing");
  auto bad_magic = good;
  bad_magic[0] = 'X';
  expect_protocol_error([&] { decode_frame(bad_magic); }, "bad magic");
  auto bad_type = good;
  bad_type[6] = 99;
  expect_protocol_error([&] { decode_frame(bad_type); }, "unknown frame type");
  auto bad_flags = good;
  bad_flags[8] = 1;
  expect_protocol_error([&] { decode_frame(bad_flags); }, "flags");
  auto huge = good;
  huge[12 + 4] = 0x80;  // payload length 2^39
  expect_protocol_error([&] { decode_frame(huge); }, "exceeds the limit");
  // Other versions pass the header check (the handshake reports them by name).
  auto v2 = encode_frame(FrameType::Ping, encode_u64(5), 2);
  EXPECT_EQ(decode_frame(v2).header.version, 2);
  EXPECT_EQ(frame_type_name(20), "forward");
  EXPECT_EQ(frame_type_name(77), "unknown(77)");
}

TEST(Frame, ReaderChecksEveryLength) {
  PayloadWriter w;
  w.u32(1000);  // string length larger than what follows
  w.u8('a');
  PayloadReader r(w.bytes());
  expect_protocol_error([&] { r.str(); }, "string");
  PayloadWriter w2;
  w2.u64(uint64_t{1} << 62);  // array count that would overflow count * 4
  PayloadReader r2(w2.bytes());
  expect_protocol_error([&] { r2.f32_array(UINT64_MAX); }, "runs past");
  PayloadWriter w3;
  w3.u8(2);
  PayloadReader r3(w3.bytes());
  expect_protocol_error([&] { r3.boolean(); }, "boolean");
  PayloadReader r4(std::span<const uint8_t>{});
  expect_protocol_error([&] { r4.u64(); });
}

TEST(Messages, ForwardRoundTrip) {
  ForwardMsg m = sample_forward();
  auto bytes = encode_forward(m);
  // head + raw activations is the same payload as encode_forward
  auto head = encode_forward_head(m);
  EXPECT_EQ(bytes.size(), head.size() + m.hidden.size() * sizeof(float));
  EXPECT_TRUE(std::equal(head.begin(), head.end(), bytes.begin()));
  ForwardMsg d = decode_forward(bytes);
  EXPECT_EQ(d.id, 42u);
  ASSERT_EQ(d.chunks.size(), 2u);
  EXPECT_EQ(d.chunks[1].seq_id, 9);
  EXPECT_EQ(d.chunks[1].pos, 5);
  EXPECT_TRUE(d.chunks[1].all_logits);
  EXPECT_FALSE(d.chunks[0].all_logits);
  EXPECT_EQ(d.chunks[0].top_logits, 40);
  EXPECT_TRUE(d.chunks[0].top_log_z);
  EXPECT_EQ(d.chunks[1].top_logits, 0);
  EXPECT_FALSE(d.chunks[1].top_log_z);
  EXPECT_EQ(d.tokens, m.tokens);
  ASSERT_EQ(d.new_sequences.size(), 1u);
  EXPECT_EQ(d.new_sequences[0].first, 7);
  EXPECT_EQ(d.new_sequences[0].second.top_k, 40);
  EXPECT_EQ(d.new_sequences[0].second.seed, 1234u);
  EXPECT_TRUE(d.new_sequences[0].second.has_seed);
  EXPECT_FLOAT_EQ(d.new_sequences[0].second.temperature, 0.7f);
  EXPECT_EQ(d.new_sequences[0].second.top_logprobs, 3);
  EXPECT_TRUE(d.return_logits);
  ASSERT_EQ(d.masks.size(), 1u);
  EXPECT_EQ(d.masks[0].first, 9);
  EXPECT_EQ(*d.masks[0].second, *m.masks[0].second);
  EXPECT_EQ(d.kv_ops, m.kv_ops);
  EXPECT_EQ(d.stage_us, m.stage_us);
  EXPECT_EQ(d.stage_queue_us, m.stage_queue_us);
  EXPECT_EQ(d.stage_send_us, m.stage_send_us);
  EXPECT_EQ(d.hidden, m.hidden);
}

TEST(Messages, StageTimesMustCoverTheSameStages) {
  ForwardMsg m = sample_forward();
  m.stage_send_us = {40};  // one stage short
  expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "stage times");
  m = sample_forward();
  m.stage_queue_us = {3, -4};
  expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "negative stage time");
  ResultMsg r;
  r.stage_us = {1, 2};
  r.stage_queue_us = {1, 2};
  r.stage_send_us = {1, 2, 3};
  expect_protocol_error([&] { decode_result(encode_result(r)); }, "stage times");
}

TEST(Messages, ForwardEveryTruncationIsRefused) {
  auto bytes = encode_forward(sample_forward());
  for (size_t n = 0; n < bytes.size(); ++n) {
    expect_protocol_error([&] { decode_forward(std::span(bytes).first(n)); });
  }
  bytes.push_back(0);
  expect_protocol_error([&] { decode_forward(bytes); }, "trailing");
}

TEST(Messages, ForwardInconsistentFieldsAreRefused) {
  {
    auto m = sample_forward();
    m.tokens.pop_back();  // chunks say 4 tokens
    m.hidden.resize(9);
    expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "token ids");
  }
  {
    auto m = sample_forward();
    m.hidden.pop_back();  // not [4, 3]
    expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "activations");
  }
  {
    auto m = sample_forward();
    m.chunks[0].pos = -1;
    expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "pos");
  }
  {
    auto m = sample_forward();
    m.kv_ops[2].kind = static_cast<model::KvOp::Kind>(9);
    expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "KV operation kind");
  }
  {
    auto m = sample_forward();
    m.kv_ops[3].n_tokens = -2;
    expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "KV operation positions");
  }
  {
    auto m = sample_forward();
    m.chunks[0].n_tokens = 0;
    m.chunks[1].n_tokens = 4;
    expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "n_tokens");
  }
  {
    auto m = sample_forward();
    m.tokens[2] = -5;
    expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "negative token");
  }
  {
    auto m = sample_forward();
    m.new_sequences[0].second.top_logprobs = 99;
    expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "top_logprobs");
  }
  for (int32_t top : {-1, runtime::kMaxTopLogits + 1}) {
    auto m = sample_forward();
    m.chunks[1].top_logits = top;
    expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "top_logits");
  }
  {
    auto m = sample_forward();
    m.hidden_dim = -3;
    expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "hidden size");
  }
  {
    auto m = sample_forward();
    m.chunks.clear();
    m.tokens.clear();
    m.hidden.clear();
    expect_protocol_error([&] { decode_forward(encode_forward(m)); }, "without chunks");
  }
  {
    auto bytes = encode_forward(sample_forward());
    bytes[8] = 0xff;  // chunk count far beyond the payload
    expect_protocol_error([&] { decode_forward(bytes); }, "chunk count");
  }
}

TEST(Messages, ResultRoundTripAndTruncations) {
  ResultMsg m;
  m.id = 3;
  runtime::SampledToken s;
  s.token = 17;
  s.logprob = -0.25f;
  s.top = {{17, -0.25f}, {4, -2.0f}};
  m.sampled = {{5, s}, {6, runtime::SampledToken{3, -1.0f, {}}}};
  m.logits = {1.0f, 2.0f, -3.5f};
  m.error = "stage 2 is down";
  m.stage_us = {100, 200};
  m.stage_queue_us = {2, 3};
  m.stage_send_us = {10, 20};
  auto bytes = encode_result(m);
  ResultMsg d = decode_result(bytes);
  EXPECT_EQ(d.stage_queue_us, m.stage_queue_us);
  EXPECT_EQ(d.stage_send_us, m.stage_send_us);
  EXPECT_EQ(d.id, 3u);
  ASSERT_EQ(d.sampled.size(), 2u);
  EXPECT_EQ(d.sampled[0].first, 5);
  EXPECT_EQ(d.sampled[0].second.token, 17);
  EXPECT_EQ(d.sampled[0].second.top, s.top);
  EXPECT_EQ(d.sampled[1].second.token, 3);
  EXPECT_EQ(d.logits, m.logits);
  EXPECT_EQ(d.error, m.error);
  for (size_t n = 0; n < bytes.size(); ++n) {
    expect_protocol_error([&] { decode_result(std::span(bytes).first(n)); });
  }
  auto bad = bytes;
  bad[8 + 8 + 8 + 4 + 4] = 21;  // first token's top count = 21 > 20
  expect_protocol_error([&] { decode_result(bad); }, "top logprobs");
}

TEST(Messages, LoadCarriesTheTensorParallelGroup) {
  LoadMsg l;
  l.model_dir = "/models/x";
  l.layers = {0, 4};
  l.tp_rank = 2;
  l.tp_shares = {1, 3, 0.5f};
  l.tp_addresses = {"", "127.0.0.1:7001", "127.0.0.1:7002"};
  LoadMsg dl = decode_load(encode_load(l));
  EXPECT_EQ(dl.tp_rank, 2);
  EXPECT_EQ(dl.tp_shares, l.tp_shares);
  EXPECT_EQ(dl.tp_addresses, l.tp_addresses);
  LoadMsg plain;  // a pipeline stage
  plain.layers = {0, 4};
  EXPECT_TRUE(decode_load(encode_load(plain)).tp_shares.empty());
  LoadMsg bad = l;
  bad.tp_rank = 0;  // rank 0 of the first group is the coordinator
  expect_protocol_error([&] { decode_load(encode_load(bad)); }, "tensor-parallel rank");
  bad.tp_rank = 3;
  expect_protocol_error([&] { decode_load(encode_load(bad)); }, "tensor-parallel rank");
  // A group computing later layers (hybrid layouts): its rank 0 is a worker, with a next stage.
  LoadMsg lead = l;
  lead.layers = {4, 8};
  lead.tp_rank = 0;
  lead.tp_addresses[0] = "127.0.0.1:7000";
  lead.next = "127.0.0.1:7003";
  dl = decode_load(encode_load(lead));
  EXPECT_EQ(dl.tp_rank, 0);
  EXPECT_EQ(dl.layers.begin, 4);
  EXPECT_EQ(dl.next, lead.next);
  bad = l;
  bad.tp_shares[1] = 0;
  expect_protocol_error([&] { decode_load(encode_load(bad)); }, "tensor-parallel share");
  bad = l;
  bad.tp_addresses.pop_back();
  expect_protocol_error([&] { decode_load(encode_load(bad)); }, "tensor-parallel group");
}

TEST(Messages, LoadCarriesTheKvCacheType) {
  LoadMsg l;
  l.layers = {0, 4};
  EXPECT_EQ(decode_load(encode_load(l)).kv_type, "f32");
  l.kv_type = "q8_0";
  EXPECT_EQ(decode_load(encode_load(l)).kv_type, "q8_0");
  l.kv_type = "q4_0";  // not a cache type
  expect_protocol_error([&] { decode_load(encode_load(l)); }, "KV cache type");
}

TEST(Messages, LoadCarriesTheWireType) {
  LoadMsg l;
  l.layers = {0, 4};
  EXPECT_EQ(decode_load(encode_load(l)).wire, "f32");
  l.wire = "bf16";
  EXPECT_EQ(decode_load(encode_load(l)).wire, "bf16");
  l.wire = "q4_k";
  expect_protocol_error([&] { decode_load(encode_load(l)); }, "wire type");
}

// --wire: the activations travel as rows of their type and read back as what the type stores
// (formats::round_activations of the values); every truncation is refused, and so is a hidden
// size that does not tile the type's blocks.
TEST(Messages, ForwardActivationsInEachWireType) {
  ForwardMsg m = sample_forward();
  m.hidden_dim = 64;
  m.hidden.clear();
  for (int i = 0; i < 4 * 64; ++i) m.hidden.push_back(std::sin(0.37f * float(i)) * float(1 + i % 7));
  for (WeightType t : formats::activation_types()) {
    SCOPED_TRACE(std::string(formats::activation_type_name(t)));
    m.hidden_type = t;
    const auto bytes = encode_forward(m);
    const auto head = encode_forward_head(m);
    EXPECT_EQ(bytes.size(), head.size() + 4 * formats::row_bytes(t, 64));
    ForwardMsg d = decode_forward(bytes);
    EXPECT_EQ(d.hidden_type, t);
    std::vector<float> want = m.hidden;
    formats::round_activations(t, want.data(), int64_t(want.size()));
    ASSERT_EQ(d.hidden.size(), want.size());
    EXPECT_EQ(std::memcmp(d.hidden.data(), want.data(), want.size() * 4), 0);
    if (t != WeightType::F32) EXPECT_NE(std::memcmp(d.hidden.data(), m.hidden.data(), want.size() * 4), 0);
    for (size_t n = bytes.size() - 40; n < bytes.size(); ++n)
      expect_protocol_error([&] { decode_forward(std::span(bytes).first(n)); });
  }
  {  // a bf16 infinity: no sender writes one
    m.hidden_type = WeightType::BF16;
    auto bytes = encode_forward(m);
    bytes[bytes.size() - 2 * 64 * 4 + 0] = 0x80;  // low byte, then high: 0x7f80 = +inf
    bytes[bytes.size() - 2 * 64 * 4 + 1] = 0x7f;
    expect_protocol_error([&] { decode_forward(bytes); }, "not finite");
  }
  ForwardMsg bad = sample_forward();  // hidden_dim 3: not whole q8_0 blocks of 32
  bad.hidden_type = WeightType::Q8_0;
  expect_protocol_error([&] { decode_forward(encode_forward_head(bad)); }, "q8_0 activations");
}

TEST(Messages, SmallFramesRoundTrip) {
  EXPECT_EQ(decode_release(encode_release({{1, -2, 3}})).seq_ids, (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(decode_text(encode_text("boom")), "boom");
  EXPECT_EQ(decode_u64(encode_u64(99)), 99u);
  LoadMsg l{"/models/x", 4, 8, 2048, "10.0.0.2:7000"};
  LoadMsg dl = decode_load(encode_load(l));
  EXPECT_EQ(dl.model_dir, l.model_dir);
  EXPECT_EQ(dl.layers.begin, 4);
  EXPECT_EQ(dl.layers.end, 8);
  EXPECT_EQ(dl.max_context, 2048);
  EXPECT_EQ(dl.next, l.next);
  l.layers.end = 2;
  expect_protocol_error([&] { decode_load(encode_load(l)); }, "layer range");
  HelloMsg h;
  h.role = "upstream";
  h.fingerprint = "abc";
  h.nonce[5] = 9;
  HelloMsg dh = decode_hello(encode_hello(h));
  EXPECT_EQ(dh.role, "upstream");
  EXPECT_EQ(dh.nonce, h.nonce);
  auto hb = encode_hello(h);
  expect_protocol_error([&] { decode_hello(std::span(hb).first(hb.size() - 1)); });
}

}  // namespace
}  // namespace meshlm::transport
