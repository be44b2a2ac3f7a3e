#include "model/weights.h"

#include "core/error.h"
#include "formats/weight_format.h"

namespace meshlm::model {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

TensorRef checked(const TensorLookup& lookup, const TensorDesc& d) {
  TensorRef t = lookup(d);
  if (t.shape != d.shape)
    throw Error("weights", "tensor '" + t.name + "' has shape " + shape_str(t.shape) + ", expected " +
                               shape_str(d.shape));
  return t;
}

formats::WeightView matrix(const TensorLookup& lookup, const TensorDesc& d, size_t& bytes,
                           backend::Backend& be) {
  const TensorRef t = checked(lookup, d);
  bytes += t.nbytes;
  return be.import_weights(formats::WeightView{t.data, t.type, d.shape[0], d.shape[1]});
}

backend::Buffer vec(const TensorLookup& lookup, const TensorDesc& d, backend::Backend& be) {
  const TensorRef t = checked(lookup, d);
  const int64_t n = d.shape[0];
  std::vector<float> v(static_cast<size_t>(n));
  formats::dequantize_row(t.type, t.data, n, v.data());
  backend::Buffer b = be.alloc(size_t(n));
  be.upload(b.data(), v.data(), size_t(n));
  return b;
}

}  // namespace

StageWeights load_stage_weights(const SafetensorsSet& st, const ModelConfig& c, LayerRange layers,
                                backend::Backend& be) {
  return load_stage_weights(safetensors_lookup(st), c, layers, be);
}

StageWeights load_stage_weights(const TensorLookup& lookup, const ModelConfig& c, LayerRange layers,
                                backend::Backend& be) {
  layers.check(c.n_layers, "weights");
  StageWeights w;
  w.layers.resize(size_t(layers.size()));
  for (size_t i = 0; i < w.layers.size(); ++i)
    if (c.moe_layer(layers.begin + int64_t(i))) w.layers[i].experts.resize(size_t(c.n_experts));
  for (const TensorDesc& d : stage_tensors(c, layers)) {
    LayerWeights* l = d.layer >= 0 ? &w.layers[size_t(d.layer - layers.begin)] : nullptr;
    ExpertWeights* x = d.expert >= 0 ? &l->experts.at(size_t(d.expert)) : nullptr;
    auto mat = [&] { return matrix(lookup, d, w.bytes, be); };
    auto v = [&] { return vec(lookup, d, be); };
    switch (d.role) {
      case TensorRole::Embed: w.embed = mat(); break;
      case TensorRole::AttnNorm: l->attn_norm = v(); break;
      case TensorRole::Wq: l->wq = mat(); break;
      case TensorRole::Bq: l->bq = v(); break;
      case TensorRole::Wk: l->wk = mat(); break;
      case TensorRole::Bk: l->bk = v(); break;
      case TensorRole::Wv: l->wv = mat(); break;
      case TensorRole::Bv: l->bv = v(); break;
      case TensorRole::QNorm: l->q_norm = v(); break;
      case TensorRole::KNorm: l->k_norm = v(); break;
      case TensorRole::Wo: l->wo = mat(); break;
      case TensorRole::MlpNorm: l->mlp_norm = v(); break;
      case TensorRole::WGate: l->w_gate = mat(); break;
      case TensorRole::WUp: l->w_up = mat(); break;
      case TensorRole::WDown: l->w_down = mat(); break;
      case TensorRole::Router: l->router = mat(); break;
      case TensorRole::ExpGate: x->w_gate = mat(); break;
      case TensorRole::ExpUp: x->w_up = mat(); break;
      case TensorRole::ExpDown: x->w_down = mat(); break;
      case TensorRole::ShGate: l->shared.w_gate = mat(); break;
      case TensorRole::ShUp: l->shared.w_up = mat(); break;
      case TensorRole::ShDown: l->shared.w_down = mat(); break;
      case TensorRole::ShScale: l->shared_scale = mat(); break;
      case TensorRole::FinalNorm: w.final_norm = v(); break;
      case TensorRole::LmHead: w.lm_head = mat(); break;
    }
  }
  if (layers.is_last(c.n_layers) && c.tie_embeddings) w.lm_head = w.embed;
  return w;
}

}  // namespace meshlm::model
