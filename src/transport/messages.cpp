#include "transport/messages.h"

#include <cassert>
#include <cmath>
#include <concepts>
#include <set>
#include <type_traits>

#include "core/error.h"
#include "model/kv_cache.h"
#include "core/sysinfo.h"
#include "formats/activation_type.h"
#include "formats/quants.h"
#include "formats/weight_format.h"

namespace meshlm::transport {
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

// ---- one field list per message ----
//
// Each message's layout is written once, as visit(archive, message): the fields in wire order.
// FieldWriter appends them to a payload (the message is const); FieldReader reads them back into
// the message, with the bounds each read takes (max lengths and counts), and runs the checks
// placed between the fields at that point of the read (the writer skips them). end() marks where
// the payload must end: the reader rejects trailing bytes there.

class FieldWriter {
 public:
  void u32(uint32_t v) { w_.u32(v); }
  void u64(uint64_t v) { w_.u64(v); }
  void i32(int32_t v) { w_.i32(v); }
  void i64(int64_t v) { w_.i64(v); }
  void f32(float v) { w_.f32(v); }
  void boolean(bool v) { w_.boolean(v); }
  void str(const std::string& s, size_t /*max_len*/) { w_.str(s); }
  void raw(std::span<const uint8_t> bytes) { w_.raw(bytes); }
  void i32_array(std::span<const int32_t> v, uint64_t /*max_count*/) { w_.i32_array(v); }
  void i64_array(std::span<const int64_t> v, uint64_t /*max_count*/) { w_.i64_array(v); }
  void u64_array(std::span<const uint64_t> v, uint64_t /*max_count*/) {
    w_.u64(v.size());
    for (uint64_t x : v) w_.u64(x);
  }
  void f32_array(std::span<const float> v, uint64_t /*max_count*/) { w_.f32_array(v); }
  // The last field of a forward frame: u64 count, then the f32 values, which the writer leaves to
  // its caller (encode_forward appends them; a transport sends them from the caller's buffer).
  void f32_tail(std::span<const float> v, uint64_t /*max_count*/) { w_.u64(v.size()); }
  // The same for activations stored in another activation type (rows of `dim`).
  void activations_tail(std::span<const float> v, WeightType /*type*/, int64_t /*dim*/,
                        uint64_t /*max_count*/) {
    w_.u64(v.size());
  }
  // u64 count, then each element's fields.
  template <typename T, typename F>
  void list(const std::vector<T>& v, size_t /*min_elem_bytes*/, uint64_t /*max_count*/,
            std::string_view /*what*/, F&& each) {
    w_.u64(v.size());
    for (const T& e : v) each(e);
  }
  // u32 count (at most max_count), then each element's fields.
  template <typename T, typename F>
  void short_list(const std::vector<T>& v, uint32_t /*max_count*/, std::string_view /*what*/,
                  F&& each) {
    w_.u32(static_cast<uint32_t>(v.size()));
    for (const T& e : v) each(e);
  }
  template <typename F>
  void check(F&&) {}
  void end() {}

  std::vector<uint8_t> take() { return w_.take(); }

 private:
  PayloadWriter w_;
};

class FieldReader {
 public:
  explicit FieldReader(std::span<const uint8_t> payload) : r_(payload) {}

  void u32(uint32_t& v) { v = r_.u32(); }
  void u64(uint64_t& v) { v = r_.u64(); }
  void i32(int32_t& v) { v = r_.i32(); }
  void i64(int64_t& v) { v = r_.i64(); }
  void f32(float& v) { v = r_.f32(); }
  void boolean(bool& v) { v = r_.boolean(); }
  void str(std::string& s, size_t max_len) { s = r_.str(max_len); }
  void raw(std::span<uint8_t> bytes) { r_.raw(bytes); }
  void i32_array(std::vector<int32_t>& v, uint64_t max_count) { v = r_.i32_array(max_count); }
  void i64_array(std::vector<int64_t>& v, uint64_t max_count) { v = r_.i64_array(max_count); }
  void u64_array(std::vector<uint64_t>& v, uint64_t max_count) {
    v.resize(r_.count(8, max_count, "mask word"));
    for (uint64_t& x : v) x = r_.u64();
  }
  void f32_array(std::vector<float>& v, uint64_t max_count) { v = r_.f32_array(max_count); }
  void f32_tail(std::vector<float>& v, uint64_t max_count) { v = r_.f32_array(max_count); }
  void activations_tail(std::vector<float>& v, WeightType type, int64_t dim, uint64_t max_count) {
    if (type == WeightType::F32) {
      v = r_.f32_array(max_count);
      return;
    }
    const uint64_t n = r_.u64();
    if (n > max_count) invalid("activation count " + std::to_string(n));
    if (n == 0) {
      v.clear();
      return;
    }
    if (dim <= 0 || n % uint64_t(dim) != 0)
      invalid(std::to_string(n) + " activations are not rows of " + std::to_string(dim));
    const uint64_t rows = n / uint64_t(dim);
    const size_t rb = formats::row_bytes(type, dim);  // dim is whole blocks (checked before)
    if (rows > r_.remaining() / rb)
      invalid("activations run past the frame (" + std::to_string(rows) + " rows of " +
              std::to_string(rb) + " bytes)");
    const uint8_t* bytes = r_.view(size_t(rows) * rb, "activations").data();
    v.resize(size_t(n));
    for (uint64_t i = 0; i < rows; ++i)
      formats::dequantize_row(type, bytes + i * rb, dim, v.data() + i * uint64_t(dim));
    // A sender encodes finite values only (formats::quantize_row refuses the others).
    for (float x : v)
      if (!std::isfinite(x)) invalid("an activation that is not finite");
  }
  // The count must fit in max_count and in what remains at min_elem_bytes an element.
  template <typename T, typename F>
  void list(std::vector<T>& v, size_t min_elem_bytes, uint64_t max_count, std::string_view what,
            F&& each) {
    v.resize(r_.count(min_elem_bytes, max_count, what));
    for (T& e : v) each(e);
  }
  template <typename T, typename F>
  void short_list(std::vector<T>& v, uint32_t max_count, std::string_view what, F&& each) {
    uint32_t n = r_.u32();
    if (n > max_count) invalid(std::string(what) + " count " + std::to_string(n));
    v.resize(n);
    for (T& e : v) each(e);
  }
  template <typename F>
  void check(F&& f) {
    f();
  }
  void end() {
    r_.expect_end();
    ended_ = true;
  }

  bool ended() const { return ended_; }

 private:
  PayloadReader r_;
  bool ended_ = false;
};

// M is T (reading) or const T (writing).
template <typename M, typename T>
concept Of = std::same_as<std::remove_const_t<M>, T>;

template <typename A, Of<runtime::SamplingParams> M>
void visit(A& a, M& p) {
  a.f32(p.temperature);
  a.i32(p.top_k);
  a.f32(p.top_p);
  a.f32(p.min_p);
  a.f32(p.repetition_penalty);
  a.f32(p.presence_penalty);
  a.f32(p.frequency_penalty);
  a.u64(p.seed);
  a.boolean(p.has_seed);
  a.i32(p.top_logprobs);
  a.boolean(p.logprobs);
  a.i64(p.prompt_tokens);
  a.check([&] {
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
  });
}

// ---- handshake ----

template <typename A, Of<HelloMsg> M>
void visit(A& a, M& m) {
  a.u32(m.version);
  a.str(m.role, 64);
  a.str(m.fingerprint, 128);
  a.str(m.client_id, 128);
  a.raw(m.nonce);
  a.end();
}

template <typename A, Of<ChallengeMsg> M>
void visit(A& a, M& m) {
  a.u32(m.version);
  a.str(m.fingerprint, 128);
  a.raw(m.nonce);
  a.raw(m.proof);
  a.end();
}

template <typename A, Of<AuthMsg> M>
void visit(A& a, M& m) {
  a.raw(m.proof);
  a.end();
}

template <typename A, Of<NodeInfo> M>
void visit(A& a, M& m) {
  a.str(m.version, 64);
  a.u64(m.mem_total);
  a.u64(m.mem_available);
  a.i32(m.cores);
  a.str(m.backend, 64);
  a.u64(m.read_bytes_per_s);
  a.end();
  a.check([&] {
    if (m.cores < 0) invalid("negative core count");
  });
}

// ---- load ----

constexpr uint32_t kMaxTpMembers = 64;

template <typename A, Of<LoadMsg> M>
void visit(A& a, M& m) {
  a.str(m.model_dir, 4096);
  a.i64(m.layers.begin);
  a.i64(m.layers.end);
  a.i64(m.max_context);
  a.str(m.kv_type, 16);
  a.str(m.wire, 16);
  a.str(m.next, 1024);
  a.boolean(m.sync);
  a.i32(m.tp_rank);
  a.f32_array(m.tp_shares, kMaxTpMembers);
  a.short_list(m.tp_addresses, kMaxTpMembers, "tensor-parallel addresses",
               [&](auto& s) { a.str(s, 1024); });
  a.end();
  a.check([&] {
    check_layers(m.layers);
    if (!m.tp_shares.empty() || !m.tp_addresses.empty() || m.tp_rank != 0) {
      if (m.tp_shares.size() < 2 || m.tp_addresses.size() != m.tp_shares.size()) {
        invalid("tensor-parallel group of " + std::to_string(m.tp_shares.size()) + " shares and " +
                std::to_string(m.tp_addresses.size()) + " addresses");
      }
      // Rank 0 of the first group is the coordinator; of a later group (hybrid), a worker.
      if (m.tp_rank < 0 || size_t(m.tp_rank) >= m.tp_shares.size() ||
          (m.tp_rank == 0 && m.layers.begin == 0)) {
        invalid("tensor-parallel rank " + std::to_string(m.tp_rank));
      }
      for (float s : m.tp_shares) {
        if (!(s > 0) || !std::isfinite(s)) invalid("tensor-parallel share " + std::to_string(s));
      }
    }
    if (m.max_context <= 0 || m.max_context > (int64_t{1} << 24)) {
      invalid("max_context " + std::to_string(m.max_context));
    }
    if (!model::kv_type_from_name(m.kv_type)) invalid("KV cache type '" + m.kv_type + "'");
    if (!formats::activation_type_from_name(m.wire)) invalid("wire type '" + m.wire + "'");
  });
}

template <typename A, Of<LoadedMsg> M>
void visit(A& a, M& m) {
  a.i64(m.n_layers);
  a.u64(m.weight_bytes);
  a.str(m.fingerprint, 128);
  a.end();
}

// ---- forward ----

// Stage timings: one entry per remote stage in each list, none negative.
void check_stage_times(const std::vector<int64_t>& compute, const std::vector<int64_t>& queue,
                       const std::vector<int64_t>& send) {
  if (queue.size() != compute.size() || send.size() != compute.size())
    invalid("stage times of " + std::to_string(compute.size()) + ", " +
            std::to_string(queue.size()) + " and " + std::to_string(send.size()) + " stages");
  for (const auto* list : {&compute, &queue, &send})
    for (int64_t us : *list)
      if (us < 0) invalid("negative stage time");
}

template <typename A, Of<ForwardMsg> M>
void visit(A& a, M& m) {
  a.u64(m.id);
  int64_t total = 0;  // tokens of all chunks (reading)
  constexpr size_t kChunkBytes = 8 + 4 + 4 + 1 + 1 + 4 + 1;
  a.list(m.chunks, kChunkBytes, kMaxChunks, "chunk", [&](auto& c) {
    a.i64(c.seq_id);
    a.i32(c.pos);
    a.i32(c.n_tokens);
    a.boolean(c.want_logits);
    a.boolean(c.all_logits);
    a.i32(c.top_logits);
    a.boolean(c.top_log_z);
    a.check([&] {
      if (c.top_logits < 0 || c.top_logits > runtime::kMaxTopLogits)
        invalid("chunk top_logits " + std::to_string(c.top_logits));
      if (c.pos < 0) invalid("chunk pos " + std::to_string(c.pos));
      if (c.n_tokens <= 0 || c.n_tokens > static_cast<int32_t>(kMaxTokens)) {
        invalid("chunk n_tokens " + std::to_string(c.n_tokens));
      }
      if (int64_t{c.pos} + c.n_tokens > INT32_MAX) invalid("chunk extends past position 2^31");
      total += c.n_tokens;
    });
  });
  a.check([&] {
    if (m.chunks.empty()) invalid("forward without chunks");
  });
  a.i32_array(m.tokens, kMaxTokens);
  a.check([&] {
    if (static_cast<int64_t>(m.tokens.size()) != total) {
      invalid("chunks cover " + std::to_string(total) + " tokens but " +
              std::to_string(m.tokens.size()) + " token ids were sent");
    }
    for (int32_t t : m.tokens) {
      if (t < 0) invalid("negative token id " + std::to_string(t));
    }
  });
  constexpr size_t kSamplingBytes = 8 + 7 * 4 + 8 + 1 + 4 + 1;
  a.list(m.new_sequences, kSamplingBytes, m.chunks.size(), "new sequence", [&](auto& s) {
    a.i64(s.first);
    visit(a, s.second);
  });
  a.boolean(m.return_logits);
  a.list(m.masks, 8 + 8, m.chunks.size(), "token mask", [&](auto& e) {
    a.i64(e.first);
    if constexpr (std::is_const_v<M>) {
      static const runtime::TokenMask kNone;
      a.u64_array(e.second ? *e.second : kNone, kMaxMaskWords);
    } else {
      auto words = std::make_shared<runtime::TokenMask>();
      a.u64_array(*words, kMaxMaskWords);
      e.second = std::move(words);
    }
  });
  constexpr size_t kKvOpBytes = 4 + 8 + 8 + 4 + 4;
  a.list(m.kv_ops, kKvOpBytes, kMaxKvOps, "KV operation", [&](auto& op) {
    uint32_t kind = static_cast<uint32_t>(op.kind);
    a.u32(kind);
    a.i64(op.seq_id);
    a.i64(op.block);
    a.i32(op.pos);
    a.i32(op.n_tokens);
    a.check([&] {
      if (kind > static_cast<uint32_t>(model::KvOp::Kind::DropAll))
        invalid("KV operation kind " + std::to_string(kind));
      if (op.pos < 0 || op.n_tokens < 0 || int64_t{op.pos} + op.n_tokens > INT32_MAX)
        invalid("KV operation positions " + std::to_string(op.pos) + "+" +
                std::to_string(op.n_tokens));
      if constexpr (!std::is_const_v<std::remove_reference_t<decltype(op)>>)
        op.kind = static_cast<model::KvOp::Kind>(kind);
    });
  });
  a.i64_array(m.stage_us, kMaxStages);
  a.i64_array(m.stage_queue_us, kMaxStages);
  a.i64_array(m.stage_send_us, kMaxStages);
  a.check([&] { check_stage_times(m.stage_us, m.stage_queue_us, m.stage_send_us); });
  // The activation type as its index in formats::activation_types().
  const auto types = formats::activation_types();
  uint32_t wire = 0;
  while (wire < types.size() && types[wire] != m.hidden_type) ++wire;
  a.u32(wire);
  a.check([&] {
    if (wire >= types.size()) invalid("activation type " + std::to_string(wire));
    if constexpr (!std::is_const_v<std::remove_reference_t<decltype(m)>>) m.hidden_type = types[wire];
  });
  a.i64(m.hidden_dim);
  a.check([&] {
    if (m.hidden_dim < 0 || m.hidden_dim > kMaxHidden) {
      invalid("hidden size " + std::to_string(m.hidden_dim));
    }
    const int64_t block = formats::info(m.hidden_type).block_elems;
    if (m.hidden_dim % block != 0)
      invalid(std::string(formats::activation_type_name(m.hidden_type)) +
              " activations of hidden size " + std::to_string(m.hidden_dim) + " (blocks of " +
              std::to_string(block) + ")");
  });
  a.activations_tail(m.hidden, m.hidden_type, m.hidden_dim, kMaxPayload / sizeof(float));
  a.check([&] {
    if (static_cast<uint64_t>(m.hidden.size()) != static_cast<uint64_t>(total * m.hidden_dim)) {
      invalid("activations hold " + std::to_string(m.hidden.size()) + " values, expected " +
              std::to_string(total) + " tokens x " + std::to_string(m.hidden_dim));
    }
  });
  a.end();
}

// ---- result ----

template <typename A, Of<ResultMsg> M>
void visit(A& a, M& m) {
  a.u64(m.id);
  constexpr size_t kSampledBytes = 8 + 4 + 4 + 4;
  a.list(m.sampled, kSampledBytes, kMaxChunks, "sampled token", [&](auto& e) {
    auto& [seq, s] = e;
    a.i64(seq);
    a.i32(s.token);
    a.f32(s.logprob);
    a.short_list(s.top, kMaxTopLogprobs, "top logprobs", [&](auto& alt) {
      a.i32(alt.first);
      a.f32(alt.second);
    });
  });
  a.f32_array(m.logits, kMaxPayload / sizeof(float));
  a.str(m.error, 1 << 16);
  a.i64_array(m.stage_us, kMaxStages);
  a.i64_array(m.stage_queue_us, kMaxStages);
  a.i64_array(m.stage_send_us, kMaxStages);
  a.check([&] { check_stage_times(m.stage_us, m.stage_queue_us, m.stage_send_us); });
  a.end();
}

// ---- model sync ----

template <typename A, Of<ManifestRequestMsg> M>
void visit(A& a, M& m) {
  a.i64(m.layers.begin);
  a.i64(m.layers.end);
  a.end();
  a.check([&] { check_layers(m.layers); });
}

template <typename A, Of<ManifestMsg> M>
void visit(A& a, M& m) {
  a.str(m.fingerprint, 128);
  uint32_t format = static_cast<uint32_t>(m.format);
  a.u32(format);
  a.check([&] {
    if (format > static_cast<uint32_t>(SyncFormat::Gguf))
      invalid("unknown model format " + std::to_string(format));
  });
  if constexpr (!std::is_const_v<M>) m.format = static_cast<SyncFormat>(format);
  a.str(m.config_json, kMaxConfigJson);
  a.list(m.gguf_parts, 8 + 8, kMaxGgufParts, "GGUF part", [&](auto& p) {
    a.str(p.header, kMaxGgufHeader);
    a.u64(p.file_size);
    a.check([&] {
      if (p.header.size() < 4 || p.header.compare(0, 4, "GGUF") != 0)
        invalid("a GGUF part header does not start with GGUF");
      if (p.file_size < p.header.size() || p.file_size > kMaxGgufFileBytes)
        invalid("a GGUF part of " + std::to_string(p.file_size) + " bytes with a header of " +
                std::to_string(p.header.size()));
    });
  });
  a.check([&] {
    if (m.format == SyncFormat::Gguf && (m.gguf_parts.empty() || !m.config_json.empty()))
      invalid("a GGUF manifest needs part headers and no config.json");
    if (m.format == SyncFormat::Safetensors && !m.gguf_parts.empty())
      invalid("a safetensors manifest with GGUF part headers");
  });
  constexpr size_t kMinEntryBytes = 4 + 1 + 4 + 8 + 8 + 16;  // name >= 1 byte, no dims
  std::set<std::string> names;                                // reading
  a.list(m.tensors, kMinEntryBytes, kMaxSyncTensors, "manifest entry", [&](auto& t) {
    a.str(t.name, kMaxTensorName);
    a.str(t.dtype, 16);
    a.i64_array(t.shape, kMaxTensorDims);
    a.u64(t.nbytes);
    a.u64(t.hash.low);
    a.u64(t.hash.high);
    a.check([&] {
      if (t.name.empty()) invalid("manifest entry without a name");
      if (!names.insert(t.name).second) invalid("tensor '" + t.name + "' listed twice");
      if (t.dtype != "U32" && !formats::from_name(t.dtype))
        invalid("tensor '" + t.name + "' has unsupported dtype '" + t.dtype + "'");
      for (int64_t d : t.shape)
        if (d < 0) invalid("tensor '" + t.name + "' has a negative dimension");
      const auto sized = stored_tensor_bytes(t.dtype, t.shape);
      if (!sized) invalid("tensor '" + t.name + "' is impossibly large or not whole blocks");
      const uint64_t bytes = *sized;
      if (bytes != t.nbytes) {
        invalid("tensor '" + t.name + "' has " + std::to_string(t.nbytes) +
                " bytes, its shape and dtype make " + std::to_string(bytes));
      }
    });
  });
  a.end();
}

template <typename A, Of<TensorRequestMsg> M>
void visit(A& a, M& m) {
  a.list(m.ranges, 4 + 8, kMaxSyncTensors, "tensor range", [&](auto& t) {
    a.str(t.name, kMaxTensorName);
    a.u64(t.offset);
  });
  a.check([&] {
    if (m.ranges.empty()) invalid("tensor request without tensors");
  });
  a.end();
}

// The head of a tensor data frame; the data follows it (no end()).
template <typename A, Of<TensorDataHead> M>
void visit(A& a, M& h) {
  a.u32(h.range);
  a.u64(h.offset);
}

// ---- small frames ----

template <typename A, Of<ReleaseMsg> M>
void visit(A& a, M& m) {
  a.i64_array(m.seq_ids, 1 << 20);
  a.end();
}

// An error frame: one string.
template <typename A, Of<std::string> M>
void visit(A& a, M& text) {
  a.str(text, 1 << 16);
  a.end();
}

// Ping / pong: one u64.
template <typename A, Of<uint64_t> M>
void visit(A& a, M& v) {
  a.u64(v);
  a.end();
}

template <typename T>
std::vector<uint8_t> encode(const T& m) {
  FieldWriter w;
  visit(w, m);
  return w.take();
}

template <typename T>
T decode(std::span<const uint8_t> payload) {
  FieldReader r(payload);
  T m;
  visit(r, m);
  assert(r.ended());
  return m;
}

}  // namespace

std::vector<uint8_t> encode_hello(const HelloMsg& m) { return encode(m); }
HelloMsg decode_hello(std::span<const uint8_t> payload) { return decode<HelloMsg>(payload); }
std::vector<uint8_t> encode_challenge(const ChallengeMsg& m) { return encode(m); }
ChallengeMsg decode_challenge(std::span<const uint8_t> payload) {
  return decode<ChallengeMsg>(payload);
}
std::vector<uint8_t> encode_auth(const AuthMsg& m) { return encode(m); }
AuthMsg decode_auth(std::span<const uint8_t> payload) { return decode<AuthMsg>(payload); }
std::vector<uint8_t> encode_node_info(const NodeInfo& m) { return encode(m); }
NodeInfo decode_node_info(std::span<const uint8_t> payload) { return decode<NodeInfo>(payload); }

NodeInfo this_node_info(int threads, std::string backend) {
  NodeInfo m;
  m.version = MESHLM_VERSION_STRING;
  m.mem_total = sys::total_memory_bytes();
  m.mem_available = sys::available_memory_bytes();
  m.cores = threads > 0 ? threads : sys::cpu_cores();
  m.backend = std::move(backend);
  return m;
}

std::vector<uint8_t> encode_load(const LoadMsg& m) { return encode(m); }
LoadMsg decode_load(std::span<const uint8_t> payload) { return decode<LoadMsg>(payload); }
std::vector<uint8_t> encode_loaded(const LoadedMsg& m) { return encode(m); }
LoadedMsg decode_loaded(std::span<const uint8_t> payload) { return decode<LoadedMsg>(payload); }

std::vector<uint8_t> encode_forward_head(const ForwardMsg& m) { return encode(m); }

std::vector<uint8_t> encode_activations(WeightType type, int64_t dim, std::span<const float> v) {
  if (type == WeightType::F32) {
    auto* p = reinterpret_cast<const uint8_t*>(v.data());
    return std::vector<uint8_t>(p, p + v.size() * sizeof(float));
  }
  if (v.empty()) return {};
  if (dim <= 0 || v.size() % size_t(dim) != 0)
    throw Error("protocol", std::to_string(v.size()) + " activations are not rows of " +
                                std::to_string(dim));
  const size_t rows = v.size() / size_t(dim), rb = formats::row_bytes(type, dim);
  std::vector<uint8_t> out(rows * rb);
  for (size_t i = 0; i < rows; ++i)
    formats::quantize_row(type, v.data() + i * size_t(dim), dim, out.data() + i * rb);
  return out;
}

std::vector<uint8_t> encode_forward(const ForwardMsg& m) {
  auto out = encode_forward_head(m);
  const auto tail = encode_activations(m.hidden_type, m.hidden_dim, m.hidden);
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

ForwardMsg decode_forward(std::span<const uint8_t> payload) { return decode<ForwardMsg>(payload); }
std::vector<uint8_t> encode_result(const ResultMsg& m) { return encode(m); }
ResultMsg decode_result(std::span<const uint8_t> payload) { return decode<ResultMsg>(payload); }

std::optional<uint64_t> stored_tensor_bytes(std::string_view dtype, std::span<const int64_t> shape) {
  // U32: MLX's packed codes, 4 bytes an element like F32.
  const std::optional<WeightType> type =
      dtype == "U32" ? std::optional<WeightType>(WeightType::F32) : formats::from_name(dtype);
  if (!type) return std::nullopt;
  for (int64_t d : shape)
    if (d < 0) return std::nullopt;
  return formats::tensor_bytes(*type, shape);
}

std::vector<uint8_t> encode_manifest_request(const ManifestRequestMsg& m) { return encode(m); }
ManifestRequestMsg decode_manifest_request(std::span<const uint8_t> payload) {
  return decode<ManifestRequestMsg>(payload);
}
std::vector<uint8_t> encode_manifest(const ManifestMsg& m) { return encode(m); }
ManifestMsg decode_manifest(std::span<const uint8_t> payload) {
  return decode<ManifestMsg>(payload);
}
std::vector<uint8_t> encode_tensor_request(const TensorRequestMsg& m) { return encode(m); }
TensorRequestMsg decode_tensor_request(std::span<const uint8_t> payload) {
  return decode<TensorRequestMsg>(payload);
}
std::vector<uint8_t> encode_tensor_data_head(const TensorDataHead& h) { return encode(h); }

TensorDataHead decode_tensor_data(std::span<const uint8_t> payload,
                                  std::span<const uint8_t>& data) {
  FieldReader r(payload);
  TensorDataHead h;
  visit(r, h);
  data = payload.subspan(kTensorDataHeadSize);
  if (data.empty()) invalid("tensor data frame without data");
  return h;
}

std::vector<uint8_t> encode_release(const ReleaseMsg& m) { return encode(m); }
ReleaseMsg decode_release(std::span<const uint8_t> payload) { return decode<ReleaseMsg>(payload); }

std::vector<uint8_t> encode_text(const std::string& text) {
  return encode(text.size() > (1 << 16) ? text.substr(0, 1 << 16) : text);
}
std::string decode_text(std::span<const uint8_t> payload) { return decode<std::string>(payload); }
std::vector<uint8_t> encode_u64(uint64_t v) { return encode(v); }
uint64_t decode_u64(std::span<const uint8_t> payload) { return decode<uint64_t>(payload); }

}  // namespace meshlm::transport
