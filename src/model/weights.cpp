#include "model/weights.h"

#include "core/error.h"
#include "kernels/kernels_ref.h"

namespace meshlm::model {

namespace {

std::string layer_name(int64_t i, const char* suffix) {
  return "model.layers." + std::to_string(i) + "." + suffix;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

const TensorInfo& checked(const SafetensorsSet& st, const std::string& name,
                          std::vector<int64_t> shape) {
  const TensorInfo& t = st.info(name);
  if (!t.dtype_supported)
    throw Error("weights", "tensor '" + name + "' has dtype " + t.dtype_name +
                               "; supported: F32, BF16, F16");
  if (t.shape != shape)
    throw Error("weights", "tensor '" + name + "' has shape " + shape_str(t.shape) + ", expected " +
                               shape_str(shape));
  return t;
}

kernels::MatView matrix(const SafetensorsSet& st, const std::string& name, int64_t rows,
                        int64_t cols, size_t& bytes) {
  const TensorInfo& t = checked(st, name, {rows, cols});
  bytes += t.nbytes;
  return kernels::MatView{st.data(t), t.dtype, rows, cols};
}

std::vector<float> vec(const SafetensorsSet& st, const std::string& name, int64_t n) {
  const TensorInfo& t = checked(st, name, {n});
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = kernels::ref::load(st.data(t), t.dtype, i);
  return v;
}

}  // namespace

std::vector<std::string> stage_tensor_names(const ModelConfig& c, int64_t begin, int64_t end) {
  std::vector<std::string> names;
  if (begin == 0) names.push_back("model.embed_tokens.weight");
  for (int64_t i = begin; i < end; ++i) {
    for (const char* s : {"input_layernorm.weight", "post_attention_layernorm.weight",
                          "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                          "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                          "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"})
      names.push_back(layer_name(i, s));
    if (c.qk_norm)
      for (const char* s : {"self_attn.q_norm.weight", "self_attn.k_norm.weight"})
        names.push_back(layer_name(i, s));
    if (c.qkv_bias)
      for (const char* s : {"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"})
        names.push_back(layer_name(i, s));
  }
  if (end == c.n_layers) {
    names.push_back("model.norm.weight");
    if (c.tie_embeddings) {
      if (begin != 0) names.push_back("model.embed_tokens.weight");
    } else {
      names.push_back("lm_head.weight");
    }
  }
  return names;
}

StageWeights load_stage_weights(const SafetensorsSet& st, const ModelConfig& c, int64_t begin,
                                int64_t end) {
  if (begin < 0 || end > c.n_layers || begin >= end)
    throw Error("weights", "invalid layer range [" + std::to_string(begin) + ", " +
                               std::to_string(end) + ") for a model of " +
                               std::to_string(c.n_layers) + " layers");
  StageWeights w;
  const int64_t H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate;
  bool need_embed = begin == 0 || (end == c.n_layers && c.tie_embeddings);
  if (need_embed) w.embed = matrix(st, "model.embed_tokens.weight", c.vocab, H, w.bytes);
  for (int64_t i = begin; i < end; ++i) {
    LayerWeights l;
    l.attn_norm = vec(st, layer_name(i, "input_layernorm.weight"), H);
    l.mlp_norm = vec(st, layer_name(i, "post_attention_layernorm.weight"), H);
    l.wq = matrix(st, layer_name(i, "self_attn.q_proj.weight"), Q, H, w.bytes);
    l.wk = matrix(st, layer_name(i, "self_attn.k_proj.weight"), KV, H, w.bytes);
    l.wv = matrix(st, layer_name(i, "self_attn.v_proj.weight"), KV, H, w.bytes);
    l.wo = matrix(st, layer_name(i, "self_attn.o_proj.weight"), H, Q, w.bytes);
    l.w_gate = matrix(st, layer_name(i, "mlp.gate_proj.weight"), I, H, w.bytes);
    l.w_up = matrix(st, layer_name(i, "mlp.up_proj.weight"), I, H, w.bytes);
    l.w_down = matrix(st, layer_name(i, "mlp.down_proj.weight"), H, I, w.bytes);
    if (c.qk_norm) {
      l.q_norm = vec(st, layer_name(i, "self_attn.q_norm.weight"), c.head_dim);
      l.k_norm = vec(st, layer_name(i, "self_attn.k_norm.weight"), c.head_dim);
    }
    if (c.qkv_bias) {
      l.bq = vec(st, layer_name(i, "self_attn.q_proj.bias"), Q);
      l.bk = vec(st, layer_name(i, "self_attn.k_proj.bias"), KV);
      l.bv = vec(st, layer_name(i, "self_attn.v_proj.bias"), KV);
    }
    w.layers.push_back(std::move(l));
  }
  if (end == c.n_layers) {
    w.final_norm = vec(st, "model.norm.weight", H);
    if (c.tie_embeddings) {
      w.lm_head = w.embed;
    } else {
      w.lm_head = matrix(st, "lm_head.weight", c.vocab, H, w.bytes);
    }
  }
  return w;
}

}  // namespace meshlm::model
