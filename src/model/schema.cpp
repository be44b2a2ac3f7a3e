#include "model/schema.h"

#include "core/error.h"
#include "model/architectures.h"

namespace meshlm::model {

namespace {

enum class Dim : uint8_t { Hidden, QDim, KvDim, HeadDim, Inter, Vocab, Experts, MoeInter, SharedInter, One };
enum class When : uint8_t { Always, QkNorm, QkvBias, Untied, DenseMlp, MoeMlp, SharedExpert };

struct Row {
  TensorRole role;
  TensorKind kind;
  const char* name;  // for layer tensors, the part after "model.layers.<i>."
  const char* gguf;  // llama.cpp's name; for layer tensors, the part after "blk.<i>."
  bool per_layer;  // per expert too for ExpGate / ExpUp / ExpDown (name: "%E" is the expert)
  Dim d0, d1;        // d1 == d0 marks a vector of d0 values
  bool vector;
  When when;
  SplitAxis split;
};

constexpr const char* kLayerPrefix = "model.layers.";

// In file order. The table is the schema; functions below only walk it.
constexpr Row kRows[] = {
    {TensorRole::Embed, TensorKind::Embedding, "model.embed_tokens.weight", "token_embd.weight", false, Dim::Vocab, Dim::Hidden, false, When::Always, SplitAxis::None},
    {TensorRole::AttnNorm, TensorKind::Norm, "input_layernorm.weight", "attn_norm.weight", true, Dim::Hidden, Dim::Hidden, true, When::Always, SplitAxis::None},
    {TensorRole::Wq, TensorKind::Matrix, "self_attn.q_proj.weight", "attn_q.weight", true, Dim::QDim, Dim::Hidden, false, When::Always, SplitAxis::Rows},
    {TensorRole::Bq, TensorKind::Bias, "self_attn.q_proj.bias", "attn_q.bias", true, Dim::QDim, Dim::QDim, true, When::QkvBias, SplitAxis::Rows},
    {TensorRole::Wk, TensorKind::Matrix, "self_attn.k_proj.weight", "attn_k.weight", true, Dim::KvDim, Dim::Hidden, false, When::Always, SplitAxis::Rows},
    {TensorRole::Bk, TensorKind::Bias, "self_attn.k_proj.bias", "attn_k.bias", true, Dim::KvDim, Dim::KvDim, true, When::QkvBias, SplitAxis::Rows},
    {TensorRole::Wv, TensorKind::Matrix, "self_attn.v_proj.weight", "attn_v.weight", true, Dim::KvDim, Dim::Hidden, false, When::Always, SplitAxis::Rows},
    {TensorRole::Bv, TensorKind::Bias, "self_attn.v_proj.bias", "attn_v.bias", true, Dim::KvDim, Dim::KvDim, true, When::QkvBias, SplitAxis::Rows},
    {TensorRole::QNorm, TensorKind::Norm, "self_attn.q_norm.weight", "attn_q_norm.weight", true, Dim::HeadDim, Dim::HeadDim, true, When::QkNorm, SplitAxis::None},
    {TensorRole::KNorm, TensorKind::Norm, "self_attn.k_norm.weight", "attn_k_norm.weight", true, Dim::HeadDim, Dim::HeadDim, true, When::QkNorm, SplitAxis::None},
    {TensorRole::Wo, TensorKind::Matrix, "self_attn.o_proj.weight", "attn_output.weight", true, Dim::Hidden, Dim::QDim, false, When::Always, SplitAxis::Cols},
    {TensorRole::MlpNorm, TensorKind::Norm, "post_attention_layernorm.weight", "ffn_norm.weight", true, Dim::Hidden, Dim::Hidden, true, When::Always, SplitAxis::None},
    {TensorRole::WGate, TensorKind::Matrix, "mlp.gate_proj.weight", "ffn_gate.weight", true, Dim::Inter, Dim::Hidden, false, When::DenseMlp, SplitAxis::Rows},
    {TensorRole::WUp, TensorKind::Matrix, "mlp.up_proj.weight", "ffn_up.weight", true, Dim::Inter, Dim::Hidden, false, When::DenseMlp, SplitAxis::Rows},
    {TensorRole::WDown, TensorKind::Matrix, "mlp.down_proj.weight", "ffn_down.weight", true, Dim::Hidden, Dim::Inter, false, When::DenseMlp, SplitAxis::Cols},
    // A MoE layer's router, then its experts in order, each gate, up, down (Hugging Face's order).
    {TensorRole::Router, TensorKind::Matrix, "mlp.gate.weight", "ffn_gate_inp.weight", true, Dim::Experts, Dim::Hidden, false, When::MoeMlp, SplitAxis::None},
    {TensorRole::ExpGate, TensorKind::Matrix, "mlp.experts.%E.gate_proj.weight", "ffn_gate_exps.weight", true, Dim::MoeInter, Dim::Hidden, false, When::MoeMlp, SplitAxis::Rows},
    {TensorRole::ExpUp, TensorKind::Matrix, "mlp.experts.%E.up_proj.weight", "ffn_up_exps.weight", true, Dim::MoeInter, Dim::Hidden, false, When::MoeMlp, SplitAxis::Rows},
    {TensorRole::ExpDown, TensorKind::Matrix, "mlp.experts.%E.down_proj.weight", "ffn_down_exps.weight", true, Dim::Hidden, Dim::MoeInter, false, When::MoeMlp, SplitAxis::Cols},
    // qwen2_moe's shared expert and its gate.
    {TensorRole::ShGate, TensorKind::Matrix, "mlp.shared_expert.gate_proj.weight", "ffn_gate_shexp.weight", true, Dim::SharedInter, Dim::Hidden, false, When::SharedExpert, SplitAxis::Rows},
    {TensorRole::ShUp, TensorKind::Matrix, "mlp.shared_expert.up_proj.weight", "ffn_up_shexp.weight", true, Dim::SharedInter, Dim::Hidden, false, When::SharedExpert, SplitAxis::Rows},
    {TensorRole::ShDown, TensorKind::Matrix, "mlp.shared_expert.down_proj.weight", "ffn_down_shexp.weight", true, Dim::Hidden, Dim::SharedInter, false, When::SharedExpert, SplitAxis::Cols},
    {TensorRole::ShScale, TensorKind::Matrix, "mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight", true, Dim::One, Dim::Hidden, false, When::SharedExpert, SplitAxis::None},
    {TensorRole::FinalNorm, TensorKind::Norm, "model.norm.weight", "output_norm.weight", false, Dim::Hidden, Dim::Hidden, true, When::Always, SplitAxis::None},
    {TensorRole::LmHead, TensorKind::Embedding, "lm_head.weight", "output.weight", false, Dim::Vocab, Dim::Hidden, false, When::Untied, SplitAxis::Rows},
};

// Families that name a row's tensor differently (same role, shape and GGUF name).
struct Rename {
  TensorRole role;
  const char* name;
};
constexpr Rename kMixtralNames[] = {
    {TensorRole::Router, "block_sparse_moe.gate.weight"},
    {TensorRole::ExpGate, "block_sparse_moe.experts.%E.w1.weight"},
    {TensorRole::ExpUp, "block_sparse_moe.experts.%E.w3.weight"},
    {TensorRole::ExpDown, "block_sparse_moe.experts.%E.w2.weight"},
};

// The row's Hugging Face name in this configuration's family.
const char* hf_name(const ModelConfig& c, const Row& r) {
  const ArchTraits* arch = find_arch(c.model_type);
  if (arch && arch->moe == Moe::Mixtral)
    for (const Rename& n : kMixtralNames)
      if (n.role == r.role) return n.name;
  return r.name;
}

int64_t dim(const ModelConfig& c, Dim d) {
  switch (d) {
    case Dim::Hidden: return c.hidden;
    case Dim::QDim: return c.q_dim();
    case Dim::KvDim: return c.kv_dim();
    case Dim::HeadDim: return c.head_dim;
    case Dim::Inter: return c.intermediate;
    case Dim::Vocab: return c.vocab;
    case Dim::Experts: return c.n_experts;
    case Dim::MoeInter: return c.moe_intermediate;
    case Dim::SharedInter: return c.shared_expert_intermediate;
    case Dim::One: return 1;
  }
  return 0;
}

// Whether the row exists in `layer` (-1 for the global rows).
bool present(const ModelConfig& c, When w, int64_t layer) {
  switch (w) {
    case When::Always: return true;
    case When::QkNorm: return c.qk_norm;
    case When::QkvBias: return c.qkv_bias;
    case When::Untied: return !c.tie_embeddings;
    case When::DenseMlp: return !c.moe_layer(layer);
    case When::MoeMlp: return c.moe_layer(layer);
    case When::SharedExpert: return c.moe_layer(layer) && c.shared_expert_intermediate > 0;
  }
  return false;
}

bool per_expert(const Row& r) { return std::string_view(r.name).find("%E") != std::string_view::npos; }

// The row's name with the expert index in place of "%E".
std::string expert_name(const char* name, int64_t expert) {
  std::string s = name;
  const size_t at = s.find("%E");
  if (at != std::string::npos) s.replace(at, 2, std::to_string(expert));
  return s;
}

const Row& row_of(TensorRole role) {
  for (const Row& r : kRows)
    if (r.role == role) return r;
  throw Error("weights", "no schema row for tensor role " + std::to_string(int(role)));
}

std::string layer_name(int64_t layer, const std::string& suffix) {
  return kLayerPrefix + std::to_string(layer) + "." + suffix;
}

TensorDesc describe(const ModelConfig& c, const Row& r, int64_t layer, int64_t expert = -1) {
  TensorDesc d;
  d.role = r.role;
  d.kind = r.kind;
  const char* name = hf_name(c, r);
  d.name = r.per_layer ? layer_name(layer, expert_name(name, expert)) : std::string(name);
  d.gguf_name = r.per_layer ? "blk." + std::to_string(layer) + "." + r.gguf : std::string(r.gguf);
  d.shape = r.vector ? std::vector<int64_t>{dim(c, r.d0)}
                     : std::vector<int64_t>{dim(c, r.d0), dim(c, r.d1)};
  d.layer = r.per_layer ? layer : -1;
  d.expert = expert;
  d.split = r.split;
  return d;
}

}  // namespace

std::string tensor_name(const ModelConfig& c, TensorRole role, int64_t layer, int64_t expert) {
  const Row& r = row_of(role);
  const char* name = hf_name(c, r);
  return r.per_layer ? layer_name(layer, expert_name(name, expert)) : std::string(name);
}

std::vector<TensorDesc> model_tensors(const ModelConfig& c) {
  return stage_tensors(c, LayerRange{0, c.n_layers});
}

std::vector<TensorDesc> stage_tensors(const ModelConfig& c, LayerRange layers) {
  layers.check(c.n_layers, "weights");
  const bool first = layers.is_first(), last = layers.is_last(c.n_layers);
  std::vector<TensorDesc> out;
  auto globals = [&](bool before_layers) {
    for (const Row& r : kRows) {
      if (r.per_layer || !present(c, r.when, -1)) continue;
      const bool is_embed = r.role == TensorRole::Embed;
      if (before_layers != is_embed) continue;
      // The embedding: on the first stage, and on the last when the head is tied to it.
      const bool wanted = is_embed ? (first || (last && c.tie_embeddings)) : last;
      if (wanted) out.push_back(describe(c, r, -1));
    }
  };
  globals(true);
  for (int64_t i = layers.begin; i < layers.end; ++i) {
    for (const Row& r : kRows) {
      if (!r.per_layer || !present(c, r.when, i) || per_expert(r)) continue;
      out.push_back(describe(c, r, i));
    }
    // The experts after the layer's other tensors: expert by expert, each gate, up, down.
    if (c.moe_layer(i))
      for (int64_t e = 0; e < c.n_experts; ++e)
        for (const Row& r : kRows)
          if (per_expert(r)) out.push_back(describe(c, r, i, e));
  }
  globals(false);
  return out;
}

std::vector<std::string> stage_tensor_names(const ModelConfig& c, LayerRange layers) {
  std::vector<std::string> names;
  for (auto& d : stage_tensors(c, layers)) names.push_back(std::move(d.name));
  return names;
}

std::string module_path(const TensorDesc& d) {
  constexpr std::string_view kWeight = ".weight";
  if (d.name.size() <= kWeight.size() ||
      std::string_view(d.name).substr(d.name.size() - kWeight.size()) != kWeight)
    return "";
  return d.name.substr(0, d.name.size() - kWeight.size());
}

std::string quant_part_name(const TensorDesc& d, QuantPart part) {
  const std::string m = module_path(d);
  if (m.empty()) throw Error("weights", "tensor '" + d.name + "' has no quantized form");
  return m + (part == QuantPart::Scales ? ".scales" : ".biases");
}

int64_t layer_of(std::string_view name) {
  const std::string_view prefix = kLayerPrefix;
  if (name.substr(0, prefix.size()) != prefix) return -1;
  size_t i = prefix.size();
  int64_t layer = 0;
  int digits = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && digits < 7) {
    layer = layer * 10 + (name[i++] - '0');
    ++digits;
  }
  if (digits == 0 || i >= name.size() || name[i] != '.') return -1;
  return layer;
}

}  // namespace meshlm::model
