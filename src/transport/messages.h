// Typed payloads of the wire frames (see frame.h for the header). Each message has an encoder
// and a decoder, both driven by one list of the message's fields (messages.cpp, visit());
// decoders validate every count, index and cross-field invariant (chunk tokens add up,
// activations match [total_tokens, hidden]) and throw Error("protocol", ...).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/stage.h"
#include "runtime/sampler.h"
#include "transport/frame.h"

namespace meshlm::transport {

using Nonce = std::array<uint8_t, 32>;
using Mac = std::array<uint8_t, 32>;  // HMAC-SHA256

// Limits that bound what a decoder accepts (well above any real use).
inline constexpr uint64_t kMaxChunks = 1 << 16;
inline constexpr uint64_t kMaxKvOps = 1 << 20;
inline constexpr uint64_t kMaxTokens = 1 << 22;
inline constexpr int64_t kMaxHidden = 1 << 18;
inline constexpr int32_t kMaxTopLogprobs = 20;
inline constexpr uint64_t kMaxStages = 1024;
inline constexpr uint64_t kMaxMaskWords = (uint64_t{1} << 24) / 64;  // vocabularies up to 2^24

struct HelloMsg {
  uint32_t version = kProtocolVersion;
  std::string role;         // "coordinator" or "upstream" (the previous stage)
  std::string fingerprint;  // model fingerprint (hex SHA-256) or "" when unknown
  std::string client_id;    // the same for every connection of one coordinator instance
  Nonce nonce{};
};

struct ChallengeMsg {
  uint32_t version = kProtocolVersion;
  std::string fingerprint;
  Nonce nonce{};
  Mac proof{};  // the server's proof of the secret
};

struct AuthMsg {
  Mac proof{};  // the client's proof of the secret
};

// Sent by a worker in its welcome frame, so only an authenticated coordinator learns it: what the
// node offers (the planner sizes its layer range from mem_available).
struct NodeInfo {
  std::string version;  // meshlm version
  uint64_t mem_total = 0, mem_available = 0;
  int32_t cores = 0;
  std::string backend;  // compute backend, e.g. "cpu/AVX2"
  // Weight bytes per second a decode step reads on this node (backend/read_speed.h, BF16, the
  // worker's threads); 0 = not measured yet (a worker measures once, when first probed).
  // Protocol 13.
  uint64_t read_bytes_per_s = 0;
};

struct LoadMsg {
  std::string model_dir;  // on the worker's filesystem
  model::LayerRange layers;
  int64_t max_context = 4096;
  std::string next;  // host:port of the next stage; "" = last stage, reply to the coordinator
  // The coordinator serves its tensors (model_sync.h): a worker without the model (model_dir ""
  // or not this model) fetches its layers into its cache. Protocol 3.
  bool sync = false;
  // Tensor parallelism (protocol 9): with shares (one per member, > 0), the worker is member
  // tp_rank (1..M-1) of a group of shares.size() that computes the layers together (model/
  // stage.h StageOptions::tensor_parallel). tp_addresses[r] is member r's host:port ("" for
  // rank 0, the coordinator, which does not listen); the worker connects to the members after
  // it and accepts the ones before it (handshake role "tp"). Empty: a pipeline stage.
  // Protocol 13 (hybrid layouts): a group computing layers after the first has a worker as rank
  // 0, which takes forwards from the previous group's rank 0 and passes them to `next` (or
  // answers the coordinator when it is last).
  int32_t tp_rank = 0;
  std::vector<float> tp_shares;
  std::vector<std::string> tp_addresses;
  // The stage's KV cache type (--cache-type; model/kv_cache.h): "f32", "bf16", "f16" or "q8_0".
  // Protocol 11.
  std::string kv_type = "f32";
  // How the stage sends its activations to the next one (--wire; protocol 12): "f32", "bf16",
  // "f16" or "q8_0".
  std::string wire = "f32";
};

// Who a "tp" connection is: member `rank` of the group computing the layers from `layer_begin`
// for the coordinator whose handshake client id is `coordinator` (remote/tp_pipeline.h).
inline std::string tp_member_id(int rank, int64_t layer_begin, const std::string& coordinator) {
  return std::to_string(rank) + "@" + std::to_string(layer_begin) + "@" + coordinator;
}

struct LoadedMsg {
  int64_t n_layers = 0;
  uint64_t weight_bytes = 0;
  std::string fingerprint;
};

struct ForwardMsg {
  uint64_t id = 0;  // micro-batch id
  std::vector<model::SeqChunk> chunks;
  std::vector<int32_t> tokens;  // all chunks' ids, concatenated
  std::vector<std::pair<int64_t, runtime::SamplingParams>> new_sequences;
  bool return_logits = false;
  // Allowed tokens of constrained sequences (protocol 7); every stage passes them on, the last
  // samples under them.
  std::vector<runtime::SeqMask> masks;
  // Prefix-cache operations (protocol 10): every stage applies them, restores and drops before
  // its forward, saves after, and passes them on.
  std::vector<model::KvOp> kv_ops;
  std::vector<int64_t> stage_us;  // compute time of each remote stage so far (µs), in order
  // Per remote stage so far, like stage_us (protocol 8): this micro-batch's time between its
  // frame arriving and its compute starting (hand-off inside the worker), and the stage's total
  // time spent sending frames downstream since it loaded (sends finished before this one).
  std::vector<int64_t> stage_queue_us, stage_send_us;
  // How the activations cross the link (--wire, protocol 12; formats/activation_type.h): f32
  // (exact), bf16, f16 or q8_0 rows of hidden_dim values. In memory they are always f32: the
  // reader decodes them, encode_forward / encode_activations encode them.
  WeightType hidden_type = WeightType::F32;
  int64_t hidden_dim = 0;
  std::vector<float> hidden;  // [total_tokens, hidden_dim]
};

struct ResultMsg {
  uint64_t id = 0;
  std::vector<std::pair<int64_t, runtime::SampledToken>> sampled;
  std::vector<float> logits;
  std::string error;
  std::vector<int64_t> stage_us;  // compute time of every remote stage for this micro-batch (µs)
  std::vector<int64_t> stage_queue_us, stage_send_us;  // as in ForwardMsg, every remote stage
};

// ---- model sync (model_sync.h) ----

inline constexpr uint64_t kMaxSyncTensors = 1 << 20;
inline constexpr size_t kMaxTensorName = 1024;
inline constexpr size_t kMaxTensorDims = 8;
inline constexpr size_t kMaxConfigJson = 16 << 20;
inline constexpr uint64_t kMaxGgufParts = 1024;
inline constexpr size_t kMaxGgufHeader = size_t{256} << 20;    // metadata + tensor table of a part
inline constexpr uint64_t kMaxGgufFileBytes = uint64_t{1} << 50;

struct ManifestRequestMsg {
  model::LayerRange layers;
};

// XXH3-128 of a tensor's bytes.
struct Hash128 {
  uint64_t low = 0, high = 0;
  bool operator==(const Hash128&) const = default;
};

struct ManifestEntry {
  std::string name;   // as the model's files spell it (Hugging Face / MLX name, or GGUF name)
  // How the tensor is stored, which is how it travels: a weight format's name
  // (formats::from_name: "F32", "BF16", "Q4_K", ...) or "U32" (an MLX matrix's packed codes).
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
  Hash128 hash;
};

// How the coordinator's model is stored, and so how a worker keeps its copy (tensor_cache.h).
enum class SyncFormat : uint32_t {
  Safetensors = 0,  // a Hugging Face or MLX folder: config.json + safetensors tensors by name
  Gguf = 1,         // a GGUF file or split set: each part's header, then tensors by GGUF name
};

// One file of a GGUF model: its bytes up to the data section (metadata, tensor table, padding;
// what the fingerprint hashes) and the file's size.
struct GgufPartHead {
  std::string header;
  uint64_t file_size = 0;
};

struct ManifestMsg {
  std::string fingerprint;
  SyncFormat format = SyncFormat::Safetensors;
  std::string config_json;  // Safetensors: the bytes of the coordinator's config.json; Gguf: ""
  std::vector<GgufPartHead> gguf_parts;  // Gguf: every part, in order (>= 1); Safetensors: none
  std::vector<ManifestEntry> tensors;
};

// Bytes of a manifest dtype's tensor of this shape (see ManifestEntry::dtype), or nullopt for a
// dtype sync does not carry, a negative dimension, rows that are not whole blocks, or > 2^50.
std::optional<uint64_t> stored_tensor_bytes(std::string_view dtype, std::span<const int64_t> shape);

struct TensorRange {
  std::string name;
  uint64_t offset = 0;  // first byte wanted; the rest of the tensor follows
};

struct TensorRequestMsg {
  std::vector<TensorRange> ranges;
};

// payload = encode_tensor_data_head(h) || the bytes; decode returns the head and the bytes' span
// (a view into the payload).
struct TensorDataHead {
  uint32_t range = 0;   // index into the request's ranges
  uint64_t offset = 0;  // byte offset of the data in the tensor
};

struct ReleaseMsg {
  std::vector<int64_t> seq_ids;
};

std::vector<uint8_t> encode_hello(const HelloMsg& m);
HelloMsg decode_hello(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_challenge(const ChallengeMsg& m);
ChallengeMsg decode_challenge(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_auth(const AuthMsg& m);
AuthMsg decode_auth(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_node_info(const NodeInfo& m);
NodeInfo decode_node_info(std::span<const uint8_t> payload);
// This process's machine; `backend` (NodeInfo::backend) comes from the caller, which knows the
// kernels (cluster::compute_backend()).
NodeInfo this_node_info(int threads, std::string backend);
std::vector<uint8_t> encode_load(const LoadMsg& m);
LoadMsg decode_load(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_loaded(const LoadedMsg& m);
LoadedMsg decode_loaded(std::span<const uint8_t> payload);

// Everything of a forward frame but the activations, which follow as the last field (u64 count
// then raw f32) so that a transport can send them from the caller's buffer without a copy:
// The bytes of activations [n / dim, dim] in an activation type (the tail of a forward frame in
// that type): rows of formats::row_bytes(type, dim). F32: the values' bytes.
std::vector<uint8_t> encode_activations(WeightType type, int64_t dim, std::span<const float> v);
// payload = encode_forward_head(m) || encode_activations(m.hidden_type, m.hidden_dim, m.hidden).
std::vector<uint8_t> encode_forward_head(const ForwardMsg& m);
std::vector<uint8_t> encode_forward(const ForwardMsg& m);  // head + activations in one buffer
ForwardMsg decode_forward(std::span<const uint8_t> payload);

std::vector<uint8_t> encode_result(const ResultMsg& m);
ResultMsg decode_result(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_manifest_request(const ManifestRequestMsg& m);
ManifestRequestMsg decode_manifest_request(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_manifest(const ManifestMsg& m);
// Checks each entry on its own (dtype known, dims non-negative, nbytes == elements x dtype size,
// names unique) and that the format's fields are there (a config for Safetensors; for Gguf no
// config, 1..kMaxGgufParts parts each with a header no longer than its file); whether they are
// the right tensors is the receiver's business.
ManifestMsg decode_manifest(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_tensor_request(const TensorRequestMsg& m);
TensorRequestMsg decode_tensor_request(std::span<const uint8_t> payload);
inline constexpr size_t kTensorDataHeadSize = 12;
std::vector<uint8_t> encode_tensor_data_head(const TensorDataHead& h);
TensorDataHead decode_tensor_data(std::span<const uint8_t> payload, std::span<const uint8_t>& data);

std::vector<uint8_t> encode_release(const ReleaseMsg& m);
ReleaseMsg decode_release(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_text(const std::string& text);  // error frames
std::string decode_text(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_u64(uint64_t v);  // ping / pong
uint64_t decode_u64(std::span<const uint8_t> payload);

}  // namespace meshlm::transport
