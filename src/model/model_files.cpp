#include "model/model_files.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "formats/gguf.h"
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
      return TensorRef{t->data, t->type, t->shape(), t->nbytes, t->name};
    };
  }

 private:
  std::unique_ptr<formats::GgufModel> model_;
  ModelConfig cfg_;
};

}  // namespace

ModelFormat detect_model_format(const std::string& path) {
  // Anything else is taken for a folder: its loader says what is missing.
  return formats::is_gguf_model_path(path) ? ModelFormat::Gguf : ModelFormat::HfFolder;
}

std::unique_ptr<ModelFiles> ModelFiles::open(const std::string& path) {
  if (detect_model_format(path) == ModelFormat::Gguf) return std::make_unique<GgufFiles>(path);
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
    return TensorRef{st.data(t), t.dtype, t.shape, t.nbytes, t.name};
  };
}

ModelConfig config_from_gguf(const formats::GgufModel& model) {
  const formats::GgufMetadata& md = model.metadata();
  const std::string arch = md.get_string("general.architecture");
  // llama.cpp's architecture names; Mistral's dense models are "llama" there too.
  const ArchTraits* traits = find_arch(arch);
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
  c.model_type = arch;
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
  if (auto bos = md.opt_i64("tokenizer.ggml.bos_token_id")) c.bos_id = *bos;
  for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"})
    if (auto id = md.opt_i64(k))
      if (std::find(c.eos_ids.begin(), c.eos_ids.end(), *id) == c.eos_ids.end())
        c.eos_ids.push_back(*id);
  c.validate();
  return c;
}

}  // namespace meshlm::model
