#include "transport/messages.h"

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/sysinfo.h"
#include "formats/weight_format.h"

namespace meshlm::dist {
namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw Error("protocol", "malformed frame: " + what);
}

// A stage's layer range as the wire carries it: non-empty, within 2^20 layers.
void check_layers(const model::LayerRange& r) {
  if (r.begin < 0 || r.end <= r.begin || r.end > (1 << 20)) invalid("layer range " + r.str());
}

void check_finite(float v, const char* name) {
  if (!std::isfinite(v)) invalid(std::string("sampling ") + name + " is not finite");
}

}  // namespace

// ---- handshake ----

std::vector<uint8_t> encode_hello(const HelloMsg& m) {
  PayloadWriter w;
  w.u32(m.version);
  w.str(m.role);
  w.str(m.fingerprint);
  w.str(m.client_id);
  w.raw(m.nonce);
  return w.take();
}

HelloMsg decode_hello(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  HelloMsg m;
  m.version = r.u32();
  m.role = r.str(64);
  m.fingerprint = r.str(128);
  m.client_id = r.str(128);
  r.raw(m.nonce);
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode_challenge(const ChallengeMsg& m) {
  PayloadWriter w;
  w.u32(m.version);
  w.str(m.fingerprint);
  w.raw(m.nonce);
  w.raw(m.proof);
  return w.take();
}

ChallengeMsg decode_challenge(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  ChallengeMsg m;
  m.version = r.u32();
  m.fingerprint = r.str(128);
  r.raw(m.nonce);
  r.raw(m.proof);
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode_auth(const AuthMsg& m) {
  PayloadWriter w;
  w.raw(m.proof);
  return w.take();
}

AuthMsg decode_auth(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  AuthMsg m;
  r.raw(m.proof);
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode_node_info(const NodeInfo& m) {
  PayloadWriter w;
  w.str(m.version);
  w.u64(m.mem_total);
  w.u64(m.mem_available);
  w.i32(m.cores);
  w.str(m.backend);
  return w.take();
}

NodeInfo decode_node_info(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  NodeInfo m;
  m.version = r.str(64);
  m.mem_total = r.u64();
  m.mem_available = r.u64();
  m.cores = r.i32();
  m.backend = r.str(64);
  r.expect_end();
  if (m.cores < 0) invalid("negative core count");
  return m;
}

NodeInfo this_node_info(int threads, std::string backend) {
  NodeInfo m;
  m.version = MESHLM_VERSION_STRING;
  m.mem_total = sys::total_memory_bytes();
  m.mem_available = sys::available_memory_bytes();
  m.cores = threads > 0 ? threads : sys::cpu_cores();
  m.backend = std::move(backend);
  return m;
}

// ---- load ----

std::vector<uint8_t> encode_load(const LoadMsg& m) {
  PayloadWriter w;
  w.str(m.model_dir);
  w.i64(m.layers.begin);
  w.i64(m.layers.end);
  w.i64(m.max_context);
  w.str(m.next);
  w.boolean(m.sync);
  return w.take();
}

LoadMsg decode_load(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  LoadMsg m;
  m.model_dir = r.str(4096);
  m.layers.begin = r.i64();
  m.layers.end = r.i64();
  m.max_context = r.i64();
  m.next = r.str(1024);
  m.sync = r.boolean();
  r.expect_end();
  check_layers(m.layers);
  if (m.max_context <= 0 || m.max_context > (int64_t{1} << 24)) {
    invalid("max_context " + std::to_string(m.max_context));
  }
  return m;
}

std::vector<uint8_t> encode_loaded(const LoadedMsg& m) {
  PayloadWriter w;
  w.i64(m.n_layers);
  w.u64(m.weight_bytes);
  w.str(m.fingerprint);
  return w.take();
}

LoadedMsg decode_loaded(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  LoadedMsg m;
  m.n_layers = r.i64();
  m.weight_bytes = r.u64();
  m.fingerprint = r.str(128);
  r.expect_end();
  return m;
}

// ---- sampling params ----

void encode_sampling(PayloadWriter& w, const runtime::SamplingParams& p) {
  w.f32(p.temperature);
  w.i32(p.top_k);
  w.f32(p.top_p);
  w.f32(p.min_p);
  w.f32(p.repetition_penalty);
  w.f32(p.presence_penalty);
  w.f32(p.frequency_penalty);
  w.u64(p.seed);
  w.boolean(p.has_seed);
  w.i32(p.top_logprobs);
  w.boolean(p.logprobs);
  w.i64(p.prompt_tokens);
}

runtime::SamplingParams decode_sampling(PayloadReader& r) {
  runtime::SamplingParams p;
  p.temperature = r.f32();
  p.top_k = r.i32();
  p.top_p = r.f32();
  p.min_p = r.f32();
  p.repetition_penalty = r.f32();
  p.presence_penalty = r.f32();
  p.frequency_penalty = r.f32();
  p.seed = r.u64();
  p.has_seed = r.boolean();
  p.top_logprobs = r.i32();
  p.logprobs = r.boolean();
  p.prompt_tokens = r.i64();
  if (p.prompt_tokens < -1) invalid("prompt_tokens " + std::to_string(p.prompt_tokens));
  check_finite(p.temperature, "temperature");
  check_finite(p.top_p, "top_p");
  check_finite(p.min_p, "min_p");
  check_finite(p.repetition_penalty, "repetition_penalty");
  check_finite(p.presence_penalty, "presence_penalty");
  check_finite(p.frequency_penalty, "frequency_penalty");
  if (p.top_k < 0) invalid("top_k " + std::to_string(p.top_k));
  if (p.top_logprobs < 0 || p.top_logprobs > kMaxTopLogprobs) {
    invalid("top_logprobs " + std::to_string(p.top_logprobs));
  }
  return p;
}

// ---- forward ----

std::vector<uint8_t> encode_forward_head(const ForwardMsg& m) {
  PayloadWriter w;
  w.u64(m.id);
  w.u64(m.chunks.size());
  for (const auto& c : m.chunks) {
    w.i64(c.seq_id);
    w.i32(c.pos);
    w.i32(c.n_tokens);
    w.boolean(c.want_logits);
    w.boolean(c.all_logits);
  }
  w.i32_array(m.tokens);
  w.u64(m.new_sequences.size());
  for (const auto& [seq, params] : m.new_sequences) {
    w.i64(seq);
    encode_sampling(w, params);
  }
  w.boolean(m.return_logits);
  w.i64_array(m.stage_us);
  w.i64(m.hidden_dim);
  w.u64(m.hidden.size());  // the f32 values follow
  return w.take();
}

std::vector<uint8_t> encode_forward(const ForwardMsg& m) {
  auto out = encode_forward_head(m);
  auto* p = reinterpret_cast<const uint8_t*>(m.hidden.data());
  out.insert(out.end(), p, p + m.hidden.size() * sizeof(float));
  return out;
}

ForwardMsg decode_forward(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  ForwardMsg m;
  m.id = r.u64();
  constexpr size_t kChunkBytes = 8 + 4 + 4 + 1 + 1;
  uint64_t n_chunks = r.count(kChunkBytes, kMaxChunks, "chunk");
  if (n_chunks == 0) invalid("forward without chunks");
  m.chunks.resize(n_chunks);
  int64_t total = 0;
  for (auto& c : m.chunks) {
    c.seq_id = r.i64();
    c.pos = r.i32();
    c.n_tokens = r.i32();
    c.want_logits = r.boolean();
    c.all_logits = r.boolean();
    if (c.pos < 0) invalid("chunk pos " + std::to_string(c.pos));
    if (c.n_tokens <= 0 || c.n_tokens > static_cast<int32_t>(kMaxTokens)) {
      invalid("chunk n_tokens " + std::to_string(c.n_tokens));
    }
    if (int64_t{c.pos} + c.n_tokens > INT32_MAX) invalid("chunk extends past position 2^31");
    total += c.n_tokens;
  }
  m.tokens = r.i32_array(kMaxTokens);
  if (static_cast<int64_t>(m.tokens.size()) != total) {
    invalid("chunks cover " + std::to_string(total) + " tokens but " +
            std::to_string(m.tokens.size()) + " token ids were sent");
  }
  for (int32_t t : m.tokens) {
    if (t < 0) invalid("negative token id " + std::to_string(t));
  }
  constexpr size_t kSamplingBytes = 8 + 7 * 4 + 8 + 1 + 4 + 1;
  uint64_t n_new = r.count(kSamplingBytes, n_chunks, "new sequence");
  m.new_sequences.resize(n_new);
  for (auto& [seq, params] : m.new_sequences) {
    seq = r.i64();
    params = decode_sampling(r);
  }
  m.return_logits = r.boolean();
  m.stage_us = r.i64_array(kMaxStages);
  for (int64_t us : m.stage_us)
    if (us < 0) invalid("negative stage time");
  m.hidden_dim = r.i64();
  if (m.hidden_dim < 0 || m.hidden_dim > kMaxHidden) {
    invalid("hidden size " + std::to_string(m.hidden_dim));
  }
  m.hidden = r.f32_array(kMaxPayload / sizeof(float));
  if (static_cast<uint64_t>(m.hidden.size()) != static_cast<uint64_t>(total * m.hidden_dim)) {
    invalid("activations hold " + std::to_string(m.hidden.size()) + " values, expected " +
            std::to_string(total) + " tokens x " + std::to_string(m.hidden_dim));
  }
  r.expect_end();
  return m;
}

// ---- result ----

std::vector<uint8_t> encode_result(const ResultMsg& m) {
  PayloadWriter w;
  w.u64(m.id);
  w.u64(m.sampled.size());
  for (const auto& [seq, s] : m.sampled) {
    w.i64(seq);
    w.i32(s.token);
    w.f32(s.logprob);
    w.u32(static_cast<uint32_t>(s.top.size()));
    for (const auto& [tok, lp] : s.top) {
      w.i32(tok);
      w.f32(lp);
    }
  }
  w.f32_array(m.logits);
  w.str(m.error);
  w.i64_array(m.stage_us);
  return w.take();
}

ResultMsg decode_result(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  ResultMsg m;
  m.id = r.u64();
  constexpr size_t kSampledBytes = 8 + 4 + 4 + 4;
  uint64_t n = r.count(kSampledBytes, kMaxChunks, "sampled token");
  m.sampled.resize(n);
  for (auto& [seq, s] : m.sampled) {
    seq = r.i64();
    s.token = r.i32();
    s.logprob = r.f32();
    uint32_t n_top = r.u32();
    if (n_top > kMaxTopLogprobs) invalid("top logprobs count " + std::to_string(n_top));
    s.top.resize(n_top);
    for (auto& [tok, lp] : s.top) {
      tok = r.i32();
      lp = r.f32();
    }
  }
  m.logits = r.f32_array(kMaxPayload / sizeof(float));
  m.error = r.str(1 << 16);
  m.stage_us = r.i64_array(kMaxStages);
  for (int64_t us : m.stage_us)
    if (us < 0) invalid("negative stage time");
  r.expect_end();
  return m;
}

// ---- model sync ----

std::vector<uint8_t> encode_manifest_request(const ManifestRequestMsg& m) {
  PayloadWriter w;
  w.i64(m.layers.begin);
  w.i64(m.layers.end);
  return w.take();
}

ManifestRequestMsg decode_manifest_request(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  ManifestRequestMsg m;
  m.layers.begin = r.i64();
  m.layers.end = r.i64();
  r.expect_end();
  check_layers(m.layers);
  return m;
}

std::vector<uint8_t> encode_manifest(const ManifestMsg& m) {
  PayloadWriter w;
  w.str(m.fingerprint);
  w.str(m.config_json);
  w.u64(m.tensors.size());
  for (const auto& t : m.tensors) {
    w.str(t.name);
    w.str(t.dtype);
    w.i64_array(t.shape);
    w.u64(t.nbytes);
    w.u64(t.hash.low);
    w.u64(t.hash.high);
  }
  return w.take();
}

ManifestMsg decode_manifest(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  ManifestMsg m;
  m.fingerprint = r.str(128);
  m.config_json = r.str(kMaxConfigJson);
  constexpr size_t kMinEntryBytes = 4 + 1 + 4 + 8 + 8 + 16;  // name >= 1 byte, no dims
  uint64_t n = r.count(kMinEntryBytes, kMaxSyncTensors, "manifest entry");
  m.tensors.resize(n);
  std::set<std::string> names;
  for (auto& t : m.tensors) {
    t.name = r.str(kMaxTensorName);
    t.dtype = r.str(16);
    t.shape = r.i64_array(kMaxTensorDims);
    t.nbytes = r.u64();
    t.hash.low = r.u64();
    t.hash.high = r.u64();
    if (t.name.empty()) invalid("manifest entry without a name");
    if (!names.insert(t.name).second) invalid("tensor '" + t.name + "' listed twice");
    const auto type = formats::from_name(t.dtype);
    if (!type) invalid("tensor '" + t.name + "' has unsupported dtype '" + t.dtype + "'");
    for (int64_t d : t.shape)
      if (d < 0) invalid("tensor '" + t.name + "' has a negative dimension");
    const auto sized = formats::tensor_bytes(*type, t.shape);
    if (!sized) invalid("tensor '" + t.name + "' is impossibly large or not whole blocks");
    const uint64_t bytes = *sized;
    if (bytes != t.nbytes) {
      invalid("tensor '" + t.name + "' has " + std::to_string(t.nbytes) + " bytes, its shape " +
              "and dtype make " + std::to_string(bytes));
    }
  }
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode_tensor_request(const TensorRequestMsg& m) {
  PayloadWriter w;
  w.u64(m.ranges.size());
  for (const auto& t : m.ranges) {
    w.str(t.name);
    w.u64(t.offset);
  }
  return w.take();
}

TensorRequestMsg decode_tensor_request(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  TensorRequestMsg m;
  uint64_t n = r.count(4 + 8, kMaxSyncTensors, "tensor range");
  if (n == 0) invalid("tensor request without tensors");
  m.ranges.resize(n);
  for (auto& t : m.ranges) {
    t.name = r.str(kMaxTensorName);
    t.offset = r.u64();
  }
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode_tensor_data_head(const TensorDataHead& h) {
  PayloadWriter w;
  w.u32(h.range);
  w.u64(h.offset);
  return w.take();
}

TensorDataHead decode_tensor_data(std::span<const uint8_t> payload,
                                  std::span<const uint8_t>& data) {
  PayloadReader r(payload);
  TensorDataHead h;
  h.range = r.u32();
  h.offset = r.u64();
  data = payload.subspan(kTensorDataHeadSize);
  if (data.empty()) invalid("tensor data frame without data");
  return h;
}

// ---- small frames ----

std::vector<uint8_t> encode_release(const ReleaseMsg& m) {
  PayloadWriter w;
  w.i64_array(m.seq_ids);
  return w.take();
}

ReleaseMsg decode_release(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  ReleaseMsg m;
  m.seq_ids = r.i64_array(1 << 20);
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode_text(const std::string& text) {
  PayloadWriter w;
  w.str(text.size() > (1 << 16) ? text.substr(0, 1 << 16) : text);
  return w.take();
}

std::string decode_text(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  std::string s = r.str(1 << 16);
  r.expect_end();
  return s;
}

std::vector<uint8_t> encode_u64(uint64_t v) {
  PayloadWriter w;
  w.u64(v);
  return w.take();
}

uint64_t decode_u64(std::span<const uint8_t> payload) {
  PayloadReader r(payload);
  uint64_t v = r.u64();
  r.expect_end();
  return v;
}

}  // namespace meshlm::dist
