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

const TensorInfo& checked(const SafetensorsSet& st, const std::string& name,
                          std::vector<int64_t> shape) {
  const TensorInfo& t = st.info(name);
  if (!t.dtype_supported) {
    std::string supported;
    for (const auto& f : formats::all())
      supported += (supported.empty() ? "" : ", ") + std::string(f.name);
    throw Error("weights",
                "tensor '" + name + "' has dtype " + t.dtype_name + "; supported: " + supported);
  }
  if (t.shape != shape)
    throw Error("weights", "tensor '" + name + "' has shape " + shape_str(t.shape) + ", expected " +
                               shape_str(shape));
  return t;
}

formats::WeightView matrix(const SafetensorsSet& st, const std::string& name, int64_t rows,
                           int64_t cols, size_t& bytes, backend::Backend& be) {
  const TensorInfo& t = checked(st, name, {rows, cols});
  bytes += t.nbytes;
  return be.import_weights(formats::WeightView{st.data(t), t.dtype, rows, cols});
}

backend::Buffer vec(const SafetensorsSet& st, const std::string& name, int64_t n,
                    backend::Backend& be) {
  const TensorInfo& t = checked(st, name, {n});
  std::vector<float> v(static_cast<size_t>(n));
  formats::dequantize_row(t.dtype, st.data(t), n, v.data());
  backend::Buffer b = be.alloc(size_t(n));
  be.upload(b.data(), v.data(), size_t(n));
  return b;
}

}  // namespace

StageWeights load_stage_weights(const SafetensorsSet& st, const ModelConfig& c, LayerRange layers,
                                backend::Backend& be) {
  layers.check(c.n_layers, "weights");
  StageWeights w;
  w.layers.resize(size_t(layers.size()));
  for (const TensorDesc& d : stage_tensors(c, layers)) {
    LayerWeights* l = d.layer >= 0 ? &w.layers[size_t(d.layer - layers.begin)] : nullptr;
    auto mat = [&] { return matrix(st, d.name, d.shape[0], d.shape[1], w.bytes, be); };
    auto v = [&] { return vec(st, d.name, d.shape[0], be); };
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
      case TensorRole::FinalNorm: w.final_norm = v(); break;
      case TensorRole::LmHead: w.lm_head = mat(); break;
    }
  }
  if (layers.is_last(c.n_layers) && c.tie_embeddings) w.lm_head = w.embed;
  return w;
}

}  // namespace meshlm::model
