#include "model/config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "core/json_file.h"
#include "model/architectures.h"
#include "model/kv_cache.h"
#include "model/model_files.h"

namespace meshlm::model {

namespace {

const nlohmann::json& require(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) throw Error("config", std::string("config.json lacks \"") + key + "\"");
  return *it;
}

int64_t require_positive(const nlohmann::json& j, const char* key) {
  const auto& v = require(j, key);
  if (!v.is_number_integer() || v.get<int64_t>() <= 0)
    throw Error("config", std::string("\"") + key + "\" must be a positive integer, got " + v.dump());
  return v.get<int64_t>();
}

template <typename T>
T get_or(const nlohmann::json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  // A bool field takes true/false, a number field a number (json's get<> throws its own
  // type_error for the other pairings).
  if (std::is_same_v<T, bool> ? !it->is_boolean() : !it->is_number())
    throw Error("config", std::string("\"") + key + "\" has the wrong type: " + it->dump());
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // A float (or an unsigned past T's range) would not convert: undefined behaviour, or a wrap.
    const double x = it->get<double>();
    if (!(x >= double(std::numeric_limits<T>::min()) && x < -double(std::numeric_limits<T>::min())))
      throw Error("config", std::string("\"") + key + "\" is out of range: " + it->dump());
  }
  return it->get<T>();
}

// A string field of `j` (`fallback` when absent or null); Error("config") for another type.
std::string string_or(const nlohmann::json& j, const char* key, const std::string& fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_string())
    throw Error("config", std::string("\"") + key + "\" must be a string, got " + it->dump());
  return it->get<std::string>();
}

// Sizes past these are no model meshlm can run; refusing them here keeps a hostile config.json
// from making the engine allocate terabytes (RoPE tables, buffers) before any weight is read.
void check_at_most(int64_t v, int64_t limit, const char* key) {
  if (v > limit)
    throw Error("config", std::string("\"") + key + "\" is " + std::to_string(v) +
                              ", implausibly large (at most " + std::to_string(limit) + ")");
}

}  // namespace

std::string supported_architectures() {
  std::string s;
  for (const auto& a : all_archs()) {
    if (!s.empty()) s += ", ";
    s += a.model_type;
  }
  return s;
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw Error("config", "config.json is not a JSON object");
  ModelConfig c;
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string())
    throw Error("config", "config.json lacks \"model_type\"; supported: " + supported_architectures());
  c.model_type = mt->get<std::string>();
  const ArchTraits* arch = find_arch(c.model_type);
  if (!arch)
    throw Error("config", "unsupported architecture '" + c.model_type +
                              "'; supported: " + supported_architectures());
  c.architecture = arch->hf_class;
  if (auto a = j.find("architectures"); a != j.end() && a->is_array() && !a->empty() && (*a)[0].is_string())
    c.architecture = (*a)[0].get<std::string>();
  c.qkv_bias = arch->qkv_bias || get_or<bool>(j, "attention_bias", false);
  c.qk_norm = arch->qk_norm;
  c.hidden = require_positive(j, "hidden_size");
  c.n_layers = require_positive(j, "num_hidden_layers");
  c.n_heads = require_positive(j, "num_attention_heads");
  c.n_kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                     ? require_positive(j, "num_key_value_heads")
                     : c.n_heads;
  c.intermediate = require_positive(j, "intermediate_size");
  c.vocab = require_positive(j, "vocab_size");
  if (arch->head_dim_from_config && j.contains("head_dim") && !j["head_dim"].is_null())
    c.head_dim = require_positive(j, "head_dim");
  else
    c.head_dim = c.hidden / c.n_heads;
  c.validate();
  c.max_position = get_or<int64_t>(j, "max_position_embeddings", 4096);
  c.rms_eps = get_or<float>(j, "rms_norm_eps", arch->default_rms_eps);
  c.rope_theta = get_or<double>(j, "rope_theta", arch->default_rope_theta);
  c.tie_embeddings = get_or<bool>(j, "tie_word_embeddings", false);
  if (auto rs = j.find("rope_scaling"); rs != j.end() && rs->is_object()) {
    std::string type = string_or(*rs, "rope_type", string_or(*rs, "type", "default"));
    if (type == "llama3") {
      c.rope_scaling = RopeScaling::Llama3;
      c.rope_factor = get_or<double>(*rs, "factor", 8.0);
      c.rope_low_freq_factor = get_or<double>(*rs, "low_freq_factor", 1.0);
      c.rope_high_freq_factor = get_or<double>(*rs, "high_freq_factor", 4.0);
      c.rope_original_max_position = get_or<int64_t>(*rs, "original_max_position_embeddings", 8192);
    } else if (type == "linear") {
      c.rope_scaling = RopeScaling::Linear;
      c.rope_factor = get_or<double>(*rs, "factor", 1.0);
    } else if (type != "default") {
      throw Error("config", "unsupported rope_scaling type '" + type + "' (supported: llama3, linear)");
    }
  }
  // Sliding-window attention (see config.h). A null or absent window is full attention.
  auto window = [&]() {
    auto w = j.find("sliding_window");
    if (w == j.end() || w->is_null()) return int64_t{0};
    if (!w->is_number_integer() || w->get<int64_t>() <= 0)
      throw Error("config", "\"sliding_window\" must be a positive integer or null, got " + w->dump());
    return w->get<int64_t>();
  };
  if (c.model_type == "mistral" || c.model_type == "mixtral") {
    c.sliding_window = window();
  } else if (get_or<bool>(j, "use_sliding_window", false)) {  // the Qwen families
    c.sliding_window = window();
    if (c.sliding_window == 0)
      throw Error("config", "\"use_sliding_window\" is true but \"sliding_window\" is not set");
    c.sliding_window_from = get_or<int64_t>(j, "max_window_layers", 0);
    if (c.sliding_window_from < 0)
      throw Error("config", "\"max_window_layers\" must not be negative");
  }
  // A window as long as the context is full attention.
  if (c.sliding_window >= c.max_position) c.sliding_window = 0;
  if (auto e = j.find("eos_token_id"); e != j.end()) {
    if (e->is_number_integer()) c.eos_ids.push_back(e->get<int64_t>());
    if (e->is_array())
      for (auto& v : *e)
        if (v.is_number_integer()) c.eos_ids.push_back(v.get<int64_t>());
  }
  if (auto b = j.find("bos_token_id"); b != j.end() && b->is_number_integer()) c.bos_id = b->get<int64_t>();
  if (arch->moe == Moe::Mixtral) {
    // Mixtral: every layer's MLP is the mixture; each expert has intermediate_size, and the
    // top-k probabilities are always renormalised.
    c.n_experts = require_positive(j, "num_local_experts");
    c.n_experts_used = require_positive(j, "num_experts_per_tok");
    c.moe_intermediate = c.intermediate;
    c.norm_topk_prob = true;
    c.validate();
  } else if (arch->moe == Moe::Qwen) {
    c.n_experts = require_positive(j, "num_experts");
    c.n_experts_used = require_positive(j, "num_experts_per_tok");
    c.moe_intermediate = require_positive(j, "moe_intermediate_size");
    c.norm_topk_prob = get_or<bool>(j, "norm_topk_prob", false);
    c.decoder_sparse_step = get_or<int64_t>(j, "decoder_sparse_step", 1);
    if (c.model_type == "qwen2_moe")
      c.shared_expert_intermediate = require_positive(j, "shared_expert_intermediate_size");
    if (auto m = j.find("mlp_only_layers"); m != j.end() && !m->is_null()) {
      if (!m->is_array()) throw Error("config", "\"mlp_only_layers\" must be a list of layer indices, got " + m->dump());
      for (const auto& v : *m) {
        if (!v.is_number_integer())
          throw Error("config", "\"mlp_only_layers\" must be a list of layer indices, got " + m->dump());
        c.mlp_only_layers.push_back(v.get<int64_t>());
      }
    }
    c.validate();
  }
  return c;
}

void ModelConfig::validate() const {
  for (auto [v, key] : {std::pair{hidden, "hidden_size"}, {n_layers, "num_hidden_layers"},
                        {n_heads, "num_attention_heads"}, {n_kv_heads, "num_key_value_heads"},
                        {intermediate, "intermediate_size"}, {vocab, "vocab_size"}})
    if (v <= 0) throw Error("config", std::string("\"") + key + "\" must be a positive integer");
  if (head_dim <= 0 || head_dim % 2 != 0)
    throw Error("config", "head_dim must be a positive even number, got " + std::to_string(head_dim));
  if (n_heads % n_kv_heads != 0)
    throw Error("config", "num_attention_heads (" + std::to_string(n_heads) +
                              ") is not a multiple of num_key_value_heads (" +
                              std::to_string(n_kv_heads) + ")");
  check_at_most(hidden, int64_t{1} << 18, "hidden_size");
  check_at_most(n_layers, int64_t{1} << 16, "num_hidden_layers");
  check_at_most(n_heads, int64_t{1} << 12, "num_attention_heads");
  check_at_most(head_dim, int64_t{1} << 12, "head_dim");
  check_at_most(intermediate, int64_t{1} << 20, "intermediate_size");
  check_at_most(vocab, int64_t{1} << 24, "vocab_size");
  if (n_experts > 0) {
    check_at_most(n_experts, int64_t{1} << 12, "num_experts");
    if (n_experts_used <= 0 || n_experts_used > n_experts)
      throw Error("config", "\"num_experts_per_tok\" is " + std::to_string(n_experts_used) +
                                ", it must be between 1 and the number of experts (" + std::to_string(n_experts) + ")");
    if (moe_intermediate <= 0) throw Error("config", "\"moe_intermediate_size\" must be a positive integer");
    check_at_most(moe_intermediate, int64_t{1} << 20, "moe_intermediate_size");
    check_at_most(shared_expert_intermediate, int64_t{1} << 20, "shared_expert_intermediate_size");
    if (decoder_sparse_step <= 0)
      throw Error("config", "\"decoder_sparse_step\" must be a positive integer, got " +
                                std::to_string(decoder_sparse_step));
    for (int64_t l : mlp_only_layers)
      if (l < 0 || l >= n_layers)
        throw Error("config", "\"mlp_only_layers\" names layer " + std::to_string(l) + ", the model has " +
                                  std::to_string(n_layers));
  }
  if (!rope_freq_factors.empty() && int64_t(rope_freq_factors.size()) != head_dim / 2)
    throw Error("config", "rope_freqs has " + std::to_string(rope_freq_factors.size()) +
                              " values, expected head_dim / 2 = " + std::to_string(head_dim / 2));
}

bool ModelConfig::moe_layer(int64_t layer) const {
  if (n_experts <= 0) return false;
  for (int64_t l : mlp_only_layers)
    if (l == layer) return false;
  return (layer + 1) % decoder_sparse_step == 0;
}

ModelConfig ModelConfig::from_dir(const std::string& dir) {
  if (detect_model_format(dir) == ModelFormat::Gguf) return ModelFiles::open(dir)->config();
  return from_json(read_json_file(dir + "/config.json", "config",
                                  " (is --model a Hugging Face model folder?)"));
}

int64_t ModelConfig::kv_bytes_per_token(WeightType kv_type) const {
  if (kv_dim() <= 0) return 0;
  return n_layers * 2 * kv_row_bytes(kv_type, kv_dim());
}

std::vector<float> ModelConfig::rope_inv_freq() const {
  // Computed in float32 as transformers does: 1 / theta^(2i/d).
  int64_t half = head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    float exponent = float(2 * i) / float(head_dim);
    inv[size_t(i)] = 1.0f / std::pow(float(rope_theta), exponent);
  }
  if (!rope_freq_factors.empty()) {
    for (int64_t i = 0; i < half; ++i) inv[size_t(i)] = inv[size_t(i)] / rope_freq_factors[size_t(i)];
  } else if (rope_scaling == RopeScaling::Linear) {
    for (auto& f : inv) f = float(f / rope_factor);
  } else if (rope_scaling == RopeScaling::Llama3) {
    const float factor = float(rope_factor), low = float(rope_low_freq_factor),
                high = float(rope_high_freq_factor), old_ctx = float(rope_original_max_position);
    const float low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    const float pi = 3.14159265358979323846f;
    for (auto& f : inv) {
      float wavelen = 2.0f * pi / f;
      float scaled = wavelen > low_wavelen ? f / factor : f;
      bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      if (medium) {
        float smooth = (old_ctx / wavelen - low) / (high - low);
        scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
      }
      f = scaled;
    }
  }
  return inv;
}

}  // namespace meshlm::model
