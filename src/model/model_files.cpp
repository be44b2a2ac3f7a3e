#include "model/model_files.h"

#include <sys/mman.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "core/json_file.h"
#include "formats/gguf.h"
#include "formats/mlx_affine.h"
#include "model/architectures.h"
#include "model/safetensors.h"

namespace meshlm::model {

namespace fs = std::filesystem;

namespace {

class HfFiles final : public ModelFiles {
 public:
  explicit HfFiles(const std::string& dir)
      : cfg_(ModelConfig::from_dir(dir)), st_(SafetensorsSet::open_dir(dir)) {}
  ModelFormat format() const override { return ModelFormat::HfFolder; }
  const ModelConfig& config() const override { return cfg_; }
  TensorLookup lookup() const override { return safetensors_lookup(*st_); }

 private:
  ModelConfig cfg_;
  std::unique_ptr<SafetensorsSet> st_;
};

std::string shape_text(const std::vector<int64_t>& s);

class GgufFiles final : public ModelFiles {
 public:
  explicit GgufFiles(const std::string& path)
      : model_(std::make_unique<formats::GgufModel>(formats::GgufModel::open(path))),
        cfg_(config_from_gguf(*model_)) {}
  ModelFormat format() const override { return ModelFormat::Gguf; }
  const ModelConfig& config() const override { return cfg_; }
  TensorLookup lookup() const override {
    const formats::GgufModel* m = model_.get();
    return [m](const TensorDesc& d) {
      const formats::GgufTensor* t = m->find_tensor(d.gguf_name);
      if (!t)
        throw Error("weights", "missing tensor '" + d.gguf_name + "' (" + d.name + ") in " +
                                   m->metadata().source());
      std::vector<int64_t> shape = t->shape();
      if (d.expert >= 0) {
        // A layer's experts stacked into one 3-D tensor [n_experts, rows, cols]: expert e is
        // the e-th [rows, cols] slice.
        if (shape.size() != 3 || d.shape.size() != 2 || d.expert >= shape[0] ||
            shape[1] != d.shape[0] || shape[2] != d.shape[1])
          throw Error("weights", "tensor '" + d.gguf_name + "' in " + m->metadata().source() +
                                     " has shape " + shape_text(shape) + ", expected [experts, " +
                                     std::to_string(d.shape.empty() ? 0 : d.shape[0]) + ", " +
                                     std::to_string(d.shape.size() < 2 ? 0 : d.shape[1]) +
                                     "] holding expert " + std::to_string(d.expert));
        const uint64_t slice = t->nbytes / uint64_t(shape[0]);
        return TensorRef{t->data + slice * uint64_t(d.expert), t->type, {shape[1], shape[2]}, slice,
                         t->name + "[" + std::to_string(d.expert) + "]", true};
      }
      // llama.cpp declares qwen2_moe's shared-expert gate 1-D [hidden]; Hugging Face's is [1, hidden].
      if (d.shape.size() == 2 && d.shape[0] == 1 && shape.size() == 1) shape.insert(shape.begin(), 1);
      return TensorRef{t->data, t->type, std::move(shape), t->nbytes, t->name, true};
    };
  }

 private:
  std::unique_ptr<formats::GgufModel> model_;
  ModelConfig cfg_;
};


// ---- MLX affine folders ----

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// config.json's quantization object, or null when it has none (an MLX folder's marker).
const nlohmann::json* quantization_of(const nlohmann::json& cfg) {
  if (!cfg.is_object()) return nullptr;
  auto q = cfg.find("quantization");
  if (q != cfg.end() && q->is_object()) return &*q;
  q = cfg.find("quantization_config");
  if (q != cfg.end() && q->is_object() && !q->contains("quant_method") &&
      (q->contains("bits") || q->contains("group_size")))
    return &*q;
  return nullptr;
}

struct MlxQuant {
  int64_t bits = 0, group = 0;
};

// Anonymous memory holding repacked tensors (munmap'ed with the ModelFiles).
struct AnonMap {
  void* p = nullptr;
  size_t n = 0;
  explicit AnonMap(size_t bytes) : n(bytes) {
    p = ::mmap(nullptr, std::max<size_t>(n, 1), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
               -1, 0);
    if (p == MAP_FAILED) throw Error("weights", "cannot allocate " + std::to_string(n) +
                                                    " bytes for a repacked MLX tensor");
  }
  ~AnonMap() { ::munmap(p, std::max<size_t>(n, 1)); }
  AnonMap(const AnonMap&) = delete;
  AnonMap& operator=(const AnonMap&) = delete;
};

class MlxFiles final : public ModelFiles {
 public:
  explicit MlxFiles(const std::string& dir)
      : cfg_(ModelConfig::from_dir(dir)), st_(SafetensorsSet::open_dir(dir)) {
    const std::string path = dir + "/config.json";
    const nlohmann::json j = read_json_file(path, "config");
    const nlohmann::json* q = quantization_of(j);
    if (!q) throw Error("config", path + " has no quantization object: not an MLX folder");
    source_ = path;
    default_ = parse_quant(*q, "quantization", std::nullopt);
    for (const auto& [key, v] : q->items()) {
      if (v.is_boolean()) {
        if (!v.get<bool>()) modules_[key] = std::nullopt;
      } else if (v.is_object()) {
        modules_[key] = parse_quant(v, "quantization." + key, default_);
      }
    }
  }
  ModelFormat format() const override { return ModelFormat::MlxFolder; }
  const ModelConfig& config() const override { return cfg_; }
  TensorLookup lookup() const override {
    return [this](const TensorDesc& d) { return find(d); };
  }
  uint64_t tensor_bytes(const TensorDesc& d) const override {
    if (auto p = resolve(d)) return p->nbytes;
    return safetensors_lookup(*st_)(d).nbytes;
  }
  WeightType tensor_type(const TensorDesc& d) const override {
    if (auto p = resolve(d)) return p->type;
    return safetensors_lookup(*st_)(d).type;
  }

 private:
  // {"group_size", "bits", "mode"} of one quantization object; fallback: the defaults of an
  // override (its missing keys).
  MlxQuant parse_quant(const nlohmann::json& q, const std::string& where,
                       std::optional<MlxQuant> fallback) const {
    auto num = [&](const char* key, std::optional<int64_t> dflt) -> int64_t {
      auto it = q.find(key);
      if (it == q.end()) {
        if (dflt) return *dflt;
        throw Error("config", source_ + ": " + where + " has no \"" + key + "\"");
      }
      if (!it->is_number_integer())
        throw Error("config", source_ + ": " + where + "." + key + " is not an integer");
      return it->get<int64_t>();
    };
    if (auto m = q.find("mode"); m != q.end() && !(m->is_string() && m->get<std::string>() == "affine"))
      throw Error("config", source_ + ": " + where + ".mode is " + m->dump() +
                                "; meshlm reads MLX \"affine\" quantization only");
    MlxQuant r;
    r.bits = num("bits", fallback ? std::optional<int64_t>(fallback->bits) : std::nullopt);
    r.group = num("group_size", fallback ? std::optional<int64_t>(fallback->group) : std::nullopt);
    return r;
  }

  // Where a quantized matrix's three tensors are and what they become.
  struct Parts {
    WeightType type;
    const TensorInfo* codes;
    const TensorInfo* scales;
    const TensorInfo* biases;
    uint64_t nbytes;  // repacked
  };

  // nullopt: the tensor is not stored quantized (not a Matrix / Embedding, or not U32).
  std::optional<Parts> resolve(const TensorDesc& d) const {
    if (d.kind != TensorKind::Matrix && d.kind != TensorKind::Embedding) return std::nullopt;
    const TensorInfo& t = st_->info(d.name);
    if (t.dtype_name != "U32") return std::nullopt;
    const std::string module = module_path(d);
    MlxQuant q = default_;
    if (auto it = modules_.find(module); it != modules_.end()) {
      if (!it->second)
        throw Error("weights", "tensor '" + d.name + "' is stored as U32 codes, but " + source_ +
                                   " leaves module '" + module + "' unquantized (false)");
      q = *it->second;
    }
    auto fail = [&](const std::string& msg) {
      return Error("weights", "MLX tensor '" + d.name + "' (" + std::to_string(q.bits) +
                                  "-bit, group size " + std::to_string(q.group) + "): " + msg);
    };
    if (!formats::mlx_affine_type(int(q.bits), 64, WeightType::BF16))
      throw fail("bits " + std::to_string(q.bits) + " is not supported (2, 3, 4, 5, 6, 8)");
    if (!formats::mlx_affine_type(4, int(q.group), WeightType::BF16))
      throw fail("group size " + std::to_string(q.group) + " is not supported (32, 64, 128)");
    const int64_t out = d.shape[0], in = d.shape[1];
    if (in % q.group != 0)
      throw fail(std::to_string(in) + " input features are not a whole number of groups of " +
                 std::to_string(q.group));
    const std::vector<int64_t> codes_shape = {out, in * q.bits / 32};
    const std::vector<int64_t> group_shape = {out, in / q.group};
    if (t.shape != codes_shape)
      throw fail("the codes have shape " + shape_text(t.shape) + ", expected " +
                 shape_text(codes_shape) + " for a " + shape_text(d.shape) + " matrix");
    const TensorInfo* part[2];
    for (QuantPart p : {QuantPart::Scales, QuantPart::Biases}) {
      const std::string n = quant_part_name(d, p);
      if (!st_->has(n)) throw fail("missing tensor '" + n + "'");
      const TensorInfo& pi = st_->info(n);
      if (pi.shape != group_shape)
        throw fail("'" + n + "' has shape " + shape_text(pi.shape) + ", expected " +
                   shape_text(group_shape));
      if (pi.dtype_name != "BF16" && pi.dtype_name != "F16" && pi.dtype_name != "F32")
        throw fail("'" + n + "' has dtype " + pi.dtype_name + "; supported: BF16, F16, F32");
      part[p == QuantPart::Scales ? 0 : 1] = &pi;
    }
    if (part[0]->dtype != part[1]->dtype)
      throw fail("scales (" + part[0]->dtype_name + ") and biases (" + part[1]->dtype_name +
                 ") differ in dtype");
    const WeightType type = *formats::mlx_affine_type(int(q.bits), int(q.group), part[0]->dtype);
    return Parts{type, &t, part[0], part[1], uint64_t(out) * formats::row_bytes(type, in)};
  }

  TensorRef find(const TensorDesc& d) const {
    const std::optional<Parts> p = resolve(d);
    if (!p) return safetensors_lookup(*st_)(d);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = repacked_.find(d.name);
    if (it == repacked_.end()) {
      auto mem = std::make_unique<AnonMap>(size_t(p->nbytes));
      const int64_t out = d.shape[0], in = d.shape[1];
      const size_t rb = formats::row_bytes(p->type, in);
      const size_t codes_rb = p->codes->nbytes / size_t(std::max<int64_t>(out, 1));
      const size_t group_rb = p->scales->nbytes / size_t(std::max<int64_t>(out, 1));
      const uint8_t* codes = st_->data(*p->codes);
      const uint8_t* scales = st_->data(*p->scales);
      const uint8_t* biases = st_->data(*p->biases);
      auto* dst = static_cast<uint8_t*>(mem->p);
      // The repacked copy replaces the file's bytes, so the file's pages are dropped as the copy
      // grows, a block of rows (~1 MiB of codes) at a time: the matrix is never resident twice.
      // (advise_dontneed drops whole pages only; the pages blocks share go with the last call.)
      auto release = [&](const TensorInfo* t, size_t row_bytes, int64_t r0, int64_t r1) {
        st_->files()[t->file_index].advise_dontneed(t->offset + size_t(r0) * row_bytes,
                                                    size_t(r1 - r0) * row_bytes);
      };
      const int64_t block_rows =
          std::max<int64_t>(1, int64_t((size_t{1} << 20) / std::max<size_t>(codes_rb, 1)));
      for (int64_t r0 = 0; r0 < out; r0 += block_rows) {
        const int64_t r1 = std::min(out, r0 + block_rows);
        for (int64_t r = r0; r < r1; ++r)
          formats::mlx_repack_row(p->type, codes + size_t(r) * codes_rb,
                                  scales + size_t(r) * group_rb, biases + size_t(r) * group_rb, in,
                                  dst + size_t(r) * rb);
        release(p->codes, codes_rb, r0, r1);
        release(p->scales, group_rb, r0, r1);
        release(p->biases, group_rb, r0, r1);
      }
      for (const TensorInfo* t : {p->codes, p->scales, p->biases})
        st_->files()[t->file_index].advise_dontneed(t->offset, t->nbytes);
      it = repacked_.emplace(d.name, std::move(mem)).first;
    }
    return TensorRef{it->second->p, p->type, d.shape, p->nbytes, d.name};
  }

  ModelConfig cfg_;
  std::unique_ptr<SafetensorsSet> st_;
  std::string source_;
  MlxQuant default_;
  std::map<std::string, std::optional<MlxQuant>> modules_;  // per-module overrides
  mutable std::mutex mu_;
  mutable std::map<std::string, std::unique_ptr<AnonMap>> repacked_;
};

}  // namespace

ModelFormat detect_model_format(const std::string& path) {
  // Anything else is taken for a folder: its loader says what is missing.
  if (formats::is_gguf_model_path(path)) return ModelFormat::Gguf;
  std::error_code ec;
  const fs::path cfg = fs::path(path) / "config.json";
  if (!fs::is_regular_file(cfg, ec)) return ModelFormat::HfFolder;
  try {
    if (quantization_of(read_json_file(cfg.string(), "config"))) return ModelFormat::MlxFolder;
  } catch (const std::exception&) {  // unreadable: the folder's loader says why
  }
  return ModelFormat::HfFolder;
}

std::unique_ptr<ModelFiles> ModelFiles::open(const std::string& path) {
  switch (detect_model_format(path)) {
    case ModelFormat::Gguf: return std::make_unique<GgufFiles>(path);
    case ModelFormat::MlxFolder: return std::make_unique<MlxFiles>(path);
    case ModelFormat::HfFolder: break;
  }
  return std::make_unique<HfFiles>(path);
}

TensorLookup safetensors_lookup(const SafetensorsSet& st) {
  return [&st](const TensorDesc& d) {
    const TensorInfo& t = st.info(d.name);
    if (!t.dtype_supported) {
      std::string supported;
      for (const auto& f : formats::all())
        if (f.plain()) supported += (supported.empty() ? "" : ", ") + std::string(f.name);
      throw Error("weights",
                  "tensor '" + d.name + "' has dtype " + t.dtype_name + "; supported: " + supported);
    }
    return TensorRef{st.data(t), t.dtype, t.shape, t.nbytes, t.name, true};
  };
}

ModelConfig config_from_gguf(const formats::GgufModel& model) {
  const formats::GgufMetadata& md = model.metadata();
  const std::string arch = md.get_string("general.architecture");
  // llama.cpp's architecture names: Mistral's dense models are "llama" there too, and so is
  // Mixtral (a "llama" with experts); Qwen's MoE families are "qwen3moe" / "qwen2moe".
  const bool has_experts = md.has(arch + ".expert_count") && md.get_i64(arch + ".expert_count") > 0;
  const ArchTraits* traits = find_gguf_arch(arch, has_experts);
  const std::string model_type = traits ? traits->model_type : arch;
  if (!traits)
    throw Error("config", md.source() + ": unsupported GGUF architecture '" + arch +
                              "'; supported: " + supported_architectures());
  auto key = [&](const char* k) { return arch + "." + k; };
  auto positive = [&](const std::string& k) {
    const int64_t v = md.get_i64(k);
    if (v <= 0) throw Error("config", md.source() + ": '" + k + "' must be positive");
    return v;
  };
  ModelConfig c;
  c.model_type = model_type;
  c.architecture = traits->hf_class;
  c.qk_norm = traits->qk_norm;
  c.qkv_bias = traits->qkv_bias || model.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.hidden = positive(key("embedding_length"));
  c.n_layers = positive(key("block_count"));
  c.n_heads = positive(key("attention.head_count"));
  c.n_kv_heads = md.has(key("attention.head_count_kv")) ? positive(key("attention.head_count_kv"))
                                                         : c.n_heads;
  c.intermediate = positive(key("feed_forward_length"));
  c.head_dim = md.has(key("attention.key_length")) ? positive(key("attention.key_length"))
                                                   : c.hidden / c.n_heads;
  const formats::GgufTensor* embed = model.find_tensor("token_embd.weight");
  if (!embed || embed->dims.size() != 2)
    throw Error("config", md.source() + ": no 2-D token_embd.weight to size the vocabulary by");
  c.vocab = embed->shape()[0];
  c.max_position = md.get_i64(key("context_length"), traits->max_position);
  c.rms_eps = md.get_f32(key("attention.layer_norm_rms_epsilon"), traits->default_rms_eps);
  c.rope_theta = md.get_f32(key("rope.freq_base"), float(traits->default_rope_theta));
  c.tie_embeddings = model.find_tensor("output.weight") == nullptr;
  const std::string scaling = md.get_string(key("rope.scaling.type"), "none");
  if (scaling == "linear") {
    c.rope_scaling = RopeScaling::Linear;
    c.rope_factor = md.get_f32(key("rope.scaling.factor"), 1.0f);
  } else if (scaling != "none") {
    throw Error("config", md.source() + ": unsupported rope scaling '" + scaling +
                              "' (supported: none, linear, rope_freqs)");
  }
  // llama.cpp rotates adjacent pairs for the llama family (its converter permutes q/k rows to
  // match); Qwen's GGUFs keep Hugging Face's half-split pairs.
  c.rope_interleaved = arch == "llama";
  if (const formats::GgufTensor* f = model.find_tensor("rope_freqs.weight")) {
    if (f->dims.size() != 1 || f->dims[0] != c.head_dim / 2)
      throw Error("config", md.source() + ": rope_freqs.weight must hold head_dim / 2 values");
    c.rope_freq_factors.resize(size_t(f->dims[0]));
    formats::dequantize_row(f->type, f->data, f->dims[0], c.rope_freq_factors.data());
  }
  if (traits->moe != Moe::None) {
    // Experts as llama.cpp reads them: its qwen3moe and llama (Mixtral) graphs renormalise the
    // top-k weights, qwen2moe's does not; a layer without a router is dense.
    c.n_experts = positive(key("expert_count"));
    c.n_experts_used = positive(key("expert_used_count"));
    c.moe_intermediate = traits->moe == Moe::Mixtral ? c.intermediate
                                                     : positive(key("expert_feed_forward_length"));
    c.norm_topk_prob = md.get_bool(key("expert_weights_norm"), model_type != "qwen2_moe");
    if (model_type == "qwen2_moe")
      c.shared_expert_intermediate = positive(key("expert_shared_feed_forward_length"));
    for (int64_t l = 0; l < c.n_layers; ++l)
      if (!model.find_tensor("blk." + std::to_string(l) + ".ffn_gate_inp.weight")) c.mlp_only_layers.push_back(l);
  }
  if (auto bos = md.opt_i64("tokenizer.ggml.bos_token_id")) c.bos_id = *bos;
  for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"})
    if (auto id = md.opt_i64(k))
      if (std::find(c.eos_ids.begin(), c.eos_ids.end(), *id) == c.eos_ids.end())
        c.eos_ids.push_back(*id);
  c.validate();
  return c;
}

}  // namespace meshlm::model
