// meshlm synth: writes a synthetic model folder (random weights, the exact Hugging Face layout of
// Qwen3 / Qwen2 / Llama 3.x / Mistral) for tests and benchmarks:
//   config.json, generation_config.json, model.safetensors (or shards + index), synth_info.json,
//   and tokenizer.json / tokenizer_config.json copied from --tokenizer-dir.
//
// Weights follow the scheme of shared/tools/make_synth_model.py (same distributions, not the same
// numbers): projections [out, in] ~ N(0, (1.5/sqrt(in))^2), embedding and lm_head
// ~ N(0, (3/sqrt(hidden))^2), RMSNorm weights 1 + N(0, 0.1^2), q/k/v biases N(0, 0.5^2).
// Every tensor is cut into chunks of kChunk elements; chunk c of tensor `name` is drawn from its
// own xoshiro256** stream seeded by splitmix64 from (seed, fnv1a64(name), c), ziggurat normals.
// So the bytes depend only on the arguments, not on the thread count or write order.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "model/architectures.h"
#include "model/config.h"
#include "model/safetensors_writer.h"
#include "model/schema.h"

namespace meshlm::cli {
namespace {

namespace fs = std::filesystem;
using model::TensorSpec;
using nlohmann::ordered_json;

constexpr int64_t kChunk = int64_t(1) << 16;  // elements per RNG stream
constexpr int64_t kBatchChunks = 64;          // chunks generated per parallel step (16 MiB f32)
constexpr double kGain = 1.5, kLogitStd = 3.0, kNormNoise = 0.1, kBiasStd = 0.5;

// ---- architectures ---------------------------------------------------------------------------

// The architecture table (model/architectures.cpp) seen by synth: its row plus the name.
struct ArchInfo {
  std::string name, hf_class;
  bool qk_norm, qkv_bias, moe;
  int64_t vocab, max_position;
  int64_t bos, eos;
};

ArchInfo arch_info(const std::string& name) {
  const model::ArchTraits* t = model::find_arch(name);
  if (!t) throw Error("synth", "unknown --arch '" + name + "' (" + model::supported_architectures() + ")");
  return {t->model_type, t->hf_class,    t->qk_norm, t->qkv_bias, t->moe != model::Moe::None,
          t->vocab,      t->max_position, t->bos_id,  t->eos_id};
}

// ---- arguments ---------------------------------------------------------------------------------

struct SynthArgs {
  std::string arch = "qwen3", out, preset, dtype = "bf16", tokenizer_dir;
  int64_t hidden = 256, intermediate = 768, layers = 4, heads = 4, kv_heads = 2, head_dim = 64;
  int64_t vocab = 0, max_position = 0;  // 0: the architecture's default
  // Mixture-of-experts families (qwen3_moe, qwen2_moe); moe_intermediate 0: intermediate / 4.
  int64_t experts = 8, experts_per_tok = 2, moe_intermediate = 0, decoder_sparse_step = 1;
  int64_t shared_expert_intermediate = 0;  // qwen2_moe; 0: --intermediate
  // Sliding-window attention (0: none): mistral / mixtral in every layer; the Qwen families with
  // use_sliding_window from layer max_window_layers on (-1: half the layers).
  int64_t sliding_window = 0, max_window_layers = -1;
  std::vector<int64_t> mlp_only_layers;
  bool untied = false;
  uint64_t seed = 1234;
  int shards = 1, threads = 0;
};

struct Preset {
  const char* name;
  int64_t hidden, intermediate, layers, heads, kv_heads, head_dim;
};
constexpr Preset kPresets[] = {
    {"tiny", 256, 768, 4, 4, 2, 64},
    {"qwen3-0.6b", 1024, 3072, 28, 16, 8, 128},
    {"qwen3-1.7b", 2048, 6144, 28, 16, 8, 128},
};

WeightType parse_dtype(const std::string& s) {
  if (s == "f32") return WeightType::F32;
  if (s == "bf16") return WeightType::BF16;
  if (s == "f16") return WeightType::F16;
  throw Error("synth", "unknown --dtype '" + s + "' (f32, bf16, f16)");
}

const char* torch_dtype_name(WeightType t) {
  return t == WeightType::F32 ? "float32" : t == WeightType::BF16 ? "bfloat16" : "float16";
}

// argv without --out / --tokenizer-dir / --threads (what regenerates the same weights).
std::vector<std::string> generator_args(int argc, char** argv) {
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string key = a.substr(0, a.find('='));
    if (key == "--out" || key == "--tokenizer-dir" || key == "--threads") {
      if (a.find('=') == std::string::npos) ++i;
      continue;
    }
    out.push_back(a);
  }
  return out;
}

// ---- config.json -------------------------------------------------------------------------------

// A token id the config may name, or null when the synthetic vocabulary is too small for it.
ordered_json token_id(int64_t id, int64_t vocab) {
  return id < vocab ? ordered_json(id) : nullptr;
}

ordered_json make_config(const SynthArgs& a, const ArchInfo& arch, WeightType dtype) {
  const bool qwen3 = arch.name == "qwen3" || arch.name == "qwen3_moe";
  const bool qwen2 = arch.name == "qwen2" || arch.name == "qwen2_moe";
  const bool mixtral = arch.name == "mixtral";
  // Mixtral's config.json has Mistral's shape plus num_local_experts / num_experts_per_tok.
  const bool mistral_like = arch.name == "mistral" || mixtral;
  ordered_json c;
  c["architectures"] = {arch.hf_class};
  if (!qwen2 && !mistral_like) c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["bos_token_id"] = token_id(arch.bos, a.vocab);
  c["eos_token_id"] = token_id(arch.eos, a.vocab);
  // Qwen2 configs never have head_dim; Mistral's only when it is not hidden / heads (Nemo).
  bool write_head_dim = qwen3 || arch.name == "llama" ||
                        (mistral_like && a.head_dim * a.heads != a.hidden);
  if (write_head_dim) c["head_dim"] = a.head_dim;
  if (arch.moe && !mixtral) c["decoder_sparse_step"] = a.decoder_sparse_step;
  c["hidden_act"] = "silu";
  c["hidden_size"] = a.hidden;
  c["initializer_range"] = 0.02;
  c["intermediate_size"] = mixtral ? a.moe_intermediate : a.intermediate;  // Mixtral: the experts'
  c["max_position_embeddings"] = a.max_position;
  if (qwen3 || qwen2)
    c["max_window_layers"] = a.sliding_window > 0 ? (a.max_window_layers >= 0 ? a.max_window_layers : a.layers / 2)
                                                  : a.layers;
  if (arch.name == "llama") c["mlp_bias"] = false;
  if (mixtral) {
    c["model_type"] = arch.name;
    c["num_attention_heads"] = a.heads;
    c["num_experts_per_tok"] = a.experts_per_tok;
  } else if (arch.moe) {
    c["mlp_only_layers"] = a.mlp_only_layers;
    c["model_type"] = arch.name;
    c["moe_intermediate_size"] = a.moe_intermediate;
    c["norm_topk_prob"] = arch.name == "qwen3_moe";  // Qwen3-MoE true, Qwen1.5/2-MoE false
    c["num_attention_heads"] = a.heads;
    c["num_experts"] = a.experts;
    c["num_experts_per_tok"] = a.experts_per_tok;
  } else {
    c["model_type"] = arch.name;
  }
  if (!arch.moe) c["num_attention_heads"] = a.heads;
  c["num_hidden_layers"] = a.layers;
  c["num_key_value_heads"] = a.kv_heads;
  if (mixtral) c["num_local_experts"] = a.experts;
  if (arch.name == "llama") c["pretraining_tp"] = 1;
  bool eps_1e5 = arch.name == "llama" || mistral_like;
  if (arch.moe) c["output_router_logits"] = false;
  c["rms_norm_eps"] = eps_1e5 ? 1e-5 : 1e-6;
  if (arch.name == "llama") {
    c["rope_scaling"] = {{"factor", 8.0},
                         {"high_freq_factor", 4.0},
                         {"low_freq_factor", 1.0},
                         {"original_max_position_embeddings", 8192},
                         {"rope_type", "llama3"}};
    c["rope_theta"] = 500000.0;
  } else if (mistral_like) {
    c["rope_theta"] = 1000000.0;
    c["sliding_window"] = a.sliding_window > 0 ? ordered_json(a.sliding_window) : ordered_json(nullptr);
  } else {
    c["rope_scaling"] = nullptr;
    if (qwen3) {
      c["rope_theta"] = 1000000;
      c["sliding_window"] = a.sliding_window > 0 ? ordered_json(a.sliding_window) : ordered_json(nullptr);
    } else {
      c["rope_theta"] = 1000000.0;
      c["sliding_window"] = a.sliding_window > 0 ? a.sliding_window : a.max_position;
    }
  }
  if (arch.moe) c["router_aux_loss_coef"] = mixtral ? 0.02 : 0.001;
  if (arch.name == "qwen2_moe") c["shared_expert_intermediate_size"] = a.shared_expert_intermediate;
  c["tie_word_embeddings"] = !a.untied;
  c["torch_dtype"] = torch_dtype_name(dtype);
  c["transformers_version"] = qwen3   ? "4.51.0"
                              : qwen2 ? "4.43.1"
                              : arch.name == "llama" ? "4.45.0"
                              : mixtral              ? "4.36.0"
                                                     : "4.42.0";
  c["use_cache"] = true;
  if (qwen3 || qwen2) c["use_sliding_window"] = a.sliding_window > 0;
  c["vocab_size"] = a.vocab;
  return c;
}

ordered_json make_generation_config(const SynthArgs& a, const ArchInfo& arch) {
  const bool qwen3 = arch.name == "qwen3" || arch.name == "qwen3_moe";
  const bool qwen2 = arch.name == "qwen2" || arch.name == "qwen2_moe";
  ordered_json g;
  g["bos_token_id"] = token_id(arch.bos, a.vocab);
  if (qwen3 || qwen2) {
    g["eos_token_id"] = ordered_json::array();
    for (int64_t id : {arch.eos, arch.bos})
      if (id < a.vocab) g["eos_token_id"].push_back(id);
    if (g["eos_token_id"].empty()) g["eos_token_id"] = nullptr;
  } else {
    g["eos_token_id"] = token_id(arch.eos, a.vocab);
  }
  g["do_sample"] = false;
  g["transformers_version"] = qwen3 ? "4.51.0" : "4.45.0";
  return g;
}

// ---- tensors -------------------------------------------------------------------------------

using Kind = model::TensorKind;

struct PlannedTensor {
  TensorSpec spec;
  Kind kind;
};

// Every tensor of the model, from the tensor schema (model/schema.h), in file order.
// The configuration is read back from the config.json synth writes, so the tensors are exactly
// the ones a loader of that file expects.
std::vector<PlannedTensor> tensor_plan(const SynthArgs& a, const ArchInfo& arch, WeightType dt) {
  const model::ModelConfig c =
      model::ModelConfig::from_json(nlohmann::json::parse(make_config(a, arch, dt).dump()));
  std::vector<PlannedTensor> plan;
  for (auto& d : model::model_tensors(c))
    plan.push_back({TensorSpec{std::move(d.name), dt, std::move(d.shape)}, d.kind});
  return plan;
}

// ---- random numbers ----------------------------------------------------------------------------

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

class Xoshiro256 {
 public:
  Xoshiro256(uint64_t seed, uint64_t name_hash, uint64_t chunk) {
    uint64_t sm = seed;
    sm = splitmix64(sm) ^ name_hash;
    sm = splitmix64(sm) ^ chunk;
    for (uint64_t& w : s_) w = splitmix64(sm);
  }
  uint64_t next() {
    uint64_t result = rotl(s_[1] * 5, 7) * 9;
    uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// Standard normals by the Marsaglia-Tsang ziggurat (128 layers): one 64-bit draw per sample on
// the fast path (~99%): bits 32..63 give the signed abscissa, bits 0..6 the layer.
class Ziggurat {
 public:
  Ziggurat() {
    const double m1 = 2147483648.0, v = 9.91256303526217e-3;
    double dn = kR, tn = dn;
    const double q = v / std::exp(-0.5 * dn * dn);
    kn_[0] = uint32_t(dn / q * m1);
    kn_[1] = 0;
    wn_[0] = float(q / m1);
    wn_[127] = float(dn / m1);
    fn_[0] = 1.0f;
    fn_[127] = float(std::exp(-0.5 * dn * dn));
    for (int i = 126; i >= 1; --i) {
      dn = std::sqrt(-2.0 * std::log(v / dn + std::exp(-0.5 * dn * dn)));
      kn_[i + 1] = uint32_t(dn / tn * m1);
      tn = dn;
      fn_[i] = float(std::exp(-0.5 * dn * dn));
      wn_[i] = float(dn / m1);
    }
  }

  float normal(Xoshiro256& rng) const {
    for (;;) {
      const uint64_t bits = rng.next();
      const int32_t hz = int32_t(uint32_t(bits >> 32));
      const uint32_t iz = uint32_t(bits & 127);
      const float x = float(hz) * wn_[iz];
      if (magnitude(hz) < kn_[iz]) return x;  // inside the layer's rectangle
      if (iz == 0) return tail(rng, hz > 0);
      // Wedge between layers iz and iz - 1: accept under the density.
      if (fn_[iz] + uniform(rng) * (fn_[iz - 1] - fn_[iz]) < std::exp(-0.5f * x * x)) return x;
    }
  }

 private:
  static constexpr double kR = 3.442619855899;  // start of the tail
  static uint32_t magnitude(int32_t v) { return v < 0 ? uint32_t(-int64_t(v)) : uint32_t(v); }
  static float uniform(Xoshiro256& rng) {  // (0, 1]
    return float((rng.next() >> 40) + 1) * (1.0f / 16777216.0f);
  }
  static float tail(Xoshiro256& rng, bool positive) {  // Marsaglia's tail method beyond kR
    const float r = float(kR);
    float x, y;
    do {
      x = -std::log(uniform(rng)) / r;
      y = -std::log(uniform(rng));
    } while (y + y < x * x);
    return positive ? r + x : -r - x;
  }

  uint32_t kn_[128];
  float wn_[128], fn_[128];
};

void fill_normal(Xoshiro256& rng, float mean, float std, float* out, int64_t n) {
  static const Ziggurat zig;
  for (int64_t i = 0; i < n; ++i) out[i] = mean + std * zig.normal(rng);
}

struct Distribution {
  float mean, std;
};

Distribution distribution(const PlannedTensor& t) {
  switch (t.kind) {
    case Kind::Matrix:
      return {0.0f, float(kGain / std::sqrt(double(t.spec.shape[1])))};
    case Kind::Embedding:
      return {0.0f, float(kLogitStd / std::sqrt(double(t.spec.shape[1])))};
    case Kind::Norm:
      return {1.0f, float(kNormNoise)};
    case Kind::Bias:
      return {0.0f, float(kBiasStd)};
  }
  return {0.0f, 1.0f};
}

// Generates one tensor batch by batch (parallel over chunks) and streams it to the writer.
void write_tensor(const PlannedTensor& t, uint64_t seed, ThreadPool& pool,
                  model::ShardedSafetensorsWriter& writer, std::vector<std::byte>& bytes,
                  std::vector<std::vector<float>>& scratch) {
  const int64_t n = t.spec.elements();
  const size_t esize = formats::row_bytes(t.spec.dtype, 1);  // synth writes plain types
  const uint64_t name_hash = fnv1a64(t.spec.name);
  const Distribution d = distribution(t);
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
  for (int64_t c0 = 0; c0 < n_chunks; c0 += kBatchChunks) {
    const int64_t c1 = std::min(n_chunks, c0 + kBatchChunks);
    const int64_t e0 = c0 * kChunk, e1 = std::min(n, c1 * kChunk);
    bytes.resize(size_t(e1 - e0) * esize);
    pool.parallel_for(c1 - c0, [&](int64_t b, int64_t e, int thread) {
      std::vector<float>& buf = scratch[size_t(thread)];
      buf.resize(size_t(kChunk));
      for (int64_t c = c0 + b; c < c0 + e; ++c) {
        const int64_t begin = c * kChunk, count = std::min(n, begin + kChunk) - begin;
        Xoshiro256 rng(seed, name_hash, uint64_t(c));
        fill_normal(rng, d.mean, d.std, buf.data(), count);
        model::encode_f32(std::span<const float>(buf.data(), size_t(count)), t.spec.dtype,
                          bytes.data() + size_t(begin - e0) * esize);
      }
    });
    writer.append(t.spec.name, bytes);
  }
}

// ---- tokenizer -----------------------------------------------------------------------------

// 1 + the largest token id of dir/tokenizer.json (model.vocab and added_tokens).
int64_t tokenizer_vocab_size(const std::string& dir) {
  fs::path tok = fs::path(dir) / "tokenizer.json";
  if (!fs::exists(tok)) throw Error("synth", "no tokenizer.json in '" + dir + "'");
  std::ifstream in(tok);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error("synth", "cannot parse '" + tok.string() + "': " + e.what());
  }
  int64_t max_id = -1;
  if (j.contains("model") && j["model"].contains("vocab") && j["model"]["vocab"].is_object())
    for (const auto& [k, v] : j["model"]["vocab"].items())
      max_id = std::max(max_id, v.get<int64_t>());
  if (j.contains("added_tokens"))
    for (const auto& t : j["added_tokens"]) max_id = std::max(max_id, t.at("id").get<int64_t>());
  return max_id + 1;
}

// Copies tokenizer.json and tokenizer_config.json (when present) verbatim.
void copy_tokenizer(const std::string& dir, const std::string& out) {
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::path src = fs::path(dir) / name;
    if (fs::exists(src))
      fs::copy_file(src, fs::path(out) / name, fs::copy_options::overwrite_existing);
  }
}

void write_json(const fs::path& path, const ordered_json& j) {
  std::ofstream f(path);
  f << j.dump(2) << "\n";
  if (!f) throw Error("synth", "cannot write '" + path.string() + "'");
}

// Removes model weight files a previous run may have left (a different shard count).
void remove_old_weights(const fs::path& out) {
  for (const auto& e : fs::directory_iterator(out)) {
    std::string n = e.path().filename().string();
    bool shard = n.starts_with("model-") && n.ends_with(".safetensors");
    if (n == "model.safetensors" || n == "model.safetensors.index.json" || shard)
      fs::remove(e.path());
  }
}

void validate(const SynthArgs& a, const ArchInfo& arch) {
  auto positive = [](int64_t v, const char* name) {
    if (v <= 0) throw Error("synth", std::string(name) + " must be positive");
  };
  positive(a.hidden, "--hidden");
  positive(a.intermediate, "--intermediate");
  positive(a.layers, "--layers");
  positive(a.heads, "--heads");
  positive(a.kv_heads, "--kv-heads");
  positive(a.head_dim, "--head-dim");
  positive(a.vocab, "--vocab");
  positive(a.max_position, "--max-position");
  if (a.heads % a.kv_heads != 0) throw Error("synth", "--heads must be a multiple of --kv-heads");
  if (a.head_dim % 2 != 0) throw Error("synth", "--head-dim must be even (RoPE)");
  if ((arch.name == "qwen2" || arch.name == "qwen2_moe") && a.head_dim * a.heads != a.hidden)
    throw Error("synth", arch.name + " configs have no head_dim: --head-dim must equal --hidden / --heads");
  if (a.shards < 1) throw Error("synth", "--shards must be at least 1");
  if (a.sliding_window < 0) throw Error("synth", "--sliding-window must not be negative");
  if (a.sliding_window > 0 && arch.name == "llama")
    throw Error("synth", "llama configs have no sliding window");
  if (arch.moe) {
    positive(a.experts, "--experts");
    positive(a.experts_per_tok, "--experts-per-tok");
    positive(a.moe_intermediate, "--moe-intermediate");
    positive(a.decoder_sparse_step, "--decoder-sparse-step");
    if (a.experts_per_tok > a.experts) throw Error("synth", "--experts-per-tok must be at most --experts");
    if (arch.name == "mixtral" && (!a.mlp_only_layers.empty() || a.decoder_sparse_step != 1))
      throw Error("synth", "mixtral has a mixture of experts in every layer: no --mlp-only-layers or "
                           "--decoder-sparse-step");
    for (int64_t l : a.mlp_only_layers)
      if (l < 0 || l >= a.layers) throw Error("synth", "--mlp-only-layers names layer " + std::to_string(l) +
                                                         " of a " + std::to_string(a.layers) + "-layer model");
  }
}

int run_synth(int argc, char** argv) {
  SynthArgs a;
  CLI::App app{"Write a synthetic model folder (random weights, Hugging Face layout)", "synth"};
  app.add_option("--arch", a.arch,
                 "qwen3 | qwen2 | llama | mistral | qwen3_moe | qwen2_moe | mixtral (default qwen3)")
      ->check(CLI::IsMember({"qwen3", "qwen2", "llama", "mistral", "qwen3_moe", "qwen2_moe", "mixtral"}));
  app.add_option("--out", a.out, "output folder")->required();
  app.add_option("--preset", a.preset, "tiny | qwen3-0.6b | qwen3-1.7b (shape; options override)")
      ->check(CLI::IsMember({"tiny", "qwen3-0.6b", "qwen3-1.7b"}));
  auto* o_hidden = app.add_option("--hidden", a.hidden, "hidden_size (256)");
  auto* o_inter = app.add_option("--intermediate", a.intermediate, "intermediate_size (768)");
  auto* o_layers = app.add_option("--layers", a.layers, "num_hidden_layers (4)");
  auto* o_heads = app.add_option("--heads", a.heads, "num_attention_heads (4)");
  auto* o_kv = app.add_option("--kv-heads", a.kv_heads, "num_key_value_heads (2)");
  auto* o_hd = app.add_option("--head-dim", a.head_dim, "head_dim (64)");
  app.add_option("--vocab", a.vocab,
                 "vocab_size (default: 151936 qwen, 128256 llama, 32768 mistral)");
  app.add_option("--dtype", a.dtype, "f32 | bf16 | f16 (bf16)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  app.add_flag("--untied", a.untied, "write a separate lm_head.weight");
  app.add_option("--seed", a.seed, "random seed (1234)");
  app.add_option("--shards", a.shards, "number of safetensors files (1: model.safetensors)");
  app.add_option("--tokenizer-dir", a.tokenizer_dir, "copy tokenizer.json / tokenizer_config.json");
  app.add_option("--max-position", a.max_position, "max_position_embeddings (arch default)");
  app.add_option("--threads", a.threads, "generator threads (default: all cores)");
  app.add_option("--experts", a.experts, "MoE: num_experts (mixtral: num_local_experts) (8)");
  app.add_option("--experts-per-tok", a.experts_per_tok, "MoE: num_experts_per_tok (2)");
  app.add_option("--moe-intermediate", a.moe_intermediate,
                 "MoE: moe_intermediate_size (--intermediate / 4); mixtral: the experts' "
                 "intermediate_size");
  app.add_option("--decoder-sparse-step", a.decoder_sparse_step,
                 "MoE: every n-th layer is a MoE layer (1)");
  app.add_option("--mlp-only-layers", a.mlp_only_layers,
                 "MoE: layers that keep the dense MLP (e.g. --mlp-only-layers 0 2)");
  app.add_option("--sliding-window", a.sliding_window,
                 "sliding-window attention of this many positions (mistral, mixtral: every layer; "
                 "qwen families: use_sliding_window from --max-window-layers on)");
  app.add_option("--max-window-layers", a.max_window_layers,
                 "qwen families: the first layer with the sliding window (default: half the layers)");
  app.add_option("--shared-expert-intermediate", a.shared_expert_intermediate,
                 "qwen2_moe: shared_expert_intermediate_size (--intermediate)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!a.preset.empty()) {
    for (const Preset& p : kPresets) {
      if (a.preset != p.name) continue;
      if (!o_hidden->count()) a.hidden = p.hidden;
      if (!o_inter->count()) a.intermediate = p.intermediate;
      if (!o_layers->count()) a.layers = p.layers;
      if (!o_heads->count()) a.heads = p.heads;
      if (!o_kv->count()) a.kv_heads = p.kv_heads;
      if (!o_hd->count()) a.head_dim = p.head_dim;
    }
  }
  const ArchInfo arch = arch_info(a.arch);
  const WeightType dtype = parse_dtype(a.dtype);
  if (a.max_position == 0) a.max_position = arch.max_position;
  if (a.vocab == 0) a.vocab = arch.vocab;
  if (a.moe_intermediate == 0) a.moe_intermediate = std::max<int64_t>(1, a.intermediate / 4);
  if (a.shared_expert_intermediate == 0) a.shared_expert_intermediate = a.intermediate;
  validate(a, arch);

  const auto t0 = std::chrono::steady_clock::now();
  // Everything that can be refused is checked before anything is written.
  std::vector<PlannedTensor> plan = tensor_plan(a, arch, dtype);
  std::vector<TensorSpec> specs;
  for (const PlannedTensor& t : plan) specs.push_back(t.spec);
  model::split_into_shards(specs, a.shards);
  if (!a.tokenizer_dir.empty()) {
    int64_t tok_vocab = tokenizer_vocab_size(a.tokenizer_dir);
    if (tok_vocab > a.vocab)
      throw Error("synth", "the tokenizer has ids up to " + std::to_string(tok_vocab - 1) +
                               " but vocab_size is " + std::to_string(a.vocab));
  }

  fs::create_directories(a.out);
  remove_old_weights(a.out);
  if (!a.tokenizer_dir.empty()) copy_tokenizer(a.tokenizer_dir, a.out);
  write_json(fs::path(a.out) / "config.json", make_config(a, arch, dtype));
  write_json(fs::path(a.out) / "generation_config.json", make_generation_config(a, arch));

  model::ShardedSafetensorsWriter writer(a.out, specs, a.shards, {{"format", "pt"}});
  ThreadPool pool(a.threads > 0 ? a.threads
                                : int(std::max(1u, std::thread::hardware_concurrency())));
  std::vector<std::byte> bytes;
  std::vector<std::vector<float>> scratch(size_t(pool.size()));
  for (const PlannedTensor& t : plan) write_tensor(t, a.seed, pool, writer, bytes, scratch);
  writer.finish();

  ordered_json info;
  info["generator"] = "meshlm synth";
  info["generator_args"] = generator_args(argc, argv);
  info["arch"] = a.arch;
  info["seed"] = a.seed;
  info["dtype"] = a.dtype;
  info["tokenizer_dir"] =
      a.tokenizer_dir.empty() ? ordered_json(nullptr) : ordered_json(a.tokenizer_dir);
  info["weights"] = {
      {"matrices", "N(0, (1.5/sqrt(fan_in))^2), fan_in = HF weight shape[1]"},
      {"embedding_and_lm_head", "N(0, (3/sqrt(hidden))^2)"},
      {"norms", "1.0 + N(0, 0.1^2)"},
      {"rng",
       "per chunk of 65536 elements: xoshiro256** seeded by splitmix64 from (seed, "
       "fnv1a64(tensor name), chunk index); 128-layer ziggurat normals"},
      {"rounding", dtype == WeightType::F32 ? "none" : "round to nearest even from float32"}};
  if (arch.qkv_bias) info["weights"]["qkv_biases"] = "N(0, 0.5^2)";
  info["tensor_bytes"] = writer.total_bytes();
  info["shards"] = writer.n_shards();
  write_json(fs::path(a.out) / "synth_info.json", info);

  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info("synth: {} {} ({} tensors, {:.1f} MB) written to {} in {:.2f} s", a.arch, a.dtype,
            plan.size(), double(writer.total_bytes()) / 1e6, a.out, secs);
  return 0;
}

Registrar reg("synth", "write a synthetic model folder (random weights, HF layout)", run_synth);

}  // namespace
}  // namespace meshlm::cli
