#include "model/weights.h"

#include <sys/mman.h>

#include <cstring>
#include <new>

#include "core/error.h"
#include "core/mmap_file.h"
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

// Slices are 2 MB-aligned so that the kernel can back them with transparent huge pages (see
// MappedFile: the same TLB argument); smaller ones only to the cache line.
constexpr size_t kHugePage = kHugePageBytes;

const std::byte* own(StageWeights& w, size_t n) {
  if (n == 0) return nullptr;
  const std::align_val_t align{n >= kHugePage ? kHugePage : 64};
  w.owned.emplace_back(static_cast<std::byte*>(::operator new[](n, align)),
                       StageWeights::FreeBytes{align});
#ifdef MADV_HUGEPAGE
  if (n >= kHugePage) ::madvise(w.owned.back().get(), n / kHugePage * kHugePage, MADV_HUGEPAGE);
#endif
  return w.owned.back().get();
}

// Rows [r0, r1) of a matrix: contiguous bytes, copied.
formats::WeightView copy_rows(StageWeights& w, const TensorRef& t, int64_t r0, int64_t r1) {
  const int64_t cols = t.shape[1];
  const size_t rb = formats::row_bytes(t.type, cols);
  const size_t n = size_t(r1 - r0) * rb;
  const std::byte* dst = own(w, n);
  if (n) std::memcpy(const_cast<std::byte*>(dst), static_cast<const std::byte*>(t.data) + size_t(r0) * rb, n);
  w.bytes += n;
  return formats::WeightView{dst, t.type, r1 - r0, cols};
}

// Columns [c0, c1) of a matrix: each row's byte sub-range, copied; c0 and c1 must be on the
// format's block boundaries (a block cannot be cut).
formats::WeightView copy_cols(StageWeights& w, const TensorRef& t, int64_t c0, int64_t c1) {
  const int64_t rows = t.shape[0], cols = t.shape[1];
  const int64_t block = formats::info(t.type).block_elems;
  if (c0 % block != 0 || c1 % block != 0)
    throw Error("tensor-parallel",
                "cannot split '" + t.name + "' (" + std::string(formats::name(t.type)) +
                    ", blocks of " + std::to_string(block) + ") at columns [" + std::to_string(c0) +
                    ", " + std::to_string(c1) +
                    "): a member's heads or intermediate range must be whole blocks");
  const size_t rb = formats::row_bytes(t.type, cols);
  const size_t off = formats::row_bytes(t.type, c0), nb = formats::row_bytes(t.type, c1 - c0);
  const std::byte* dst = own(w, size_t(rows) * nb);
  const auto* src = static_cast<const std::byte*>(t.data);
  for (int64_t r = 0; r < rows && nb; ++r)
    std::memcpy(const_cast<std::byte*>(dst) + size_t(r) * nb, src + size_t(r) * rb + off, nb);
  w.bytes += size_t(rows) * nb;
  return formats::WeightView{dst, t.type, rows, c1 - c0};
}

// Elements [b, e) of a vector (a bias), as f32.
backend::Buffer vec_range(const TensorLookup& lookup, const TensorDesc& d, int64_t b, int64_t e,
                          backend::Backend& be) {
  const TensorRef t = checked(lookup, d);
  std::vector<float> v(static_cast<size_t>(d.shape[0]));
  formats::dequantize_row(t.type, t.data, d.shape[0], v.data());
  backend::Buffer buf = be.alloc(size_t(e - b));
  be.upload(buf.data(), v.data() + b, size_t(e - b));
  return buf;
}

StageWeights load_split(const TensorLookup& lookup, const ModelConfig& c, LayerRange layers,
                        backend::Backend& be, const TensorSplit& s) {
  layers.check(c.n_layers, "weights");
  StageWeights w;
  w.layers.resize(size_t(layers.size()));
  for (size_t i = 0; i < w.layers.size(); ++i)
    if (c.moe_layer(layers.begin + int64_t(i))) w.layers[i].experts.resize(size_t(c.n_experts));
  const int64_t hd = c.head_dim;
  const int64_t q0 = s.q_begin * hd, q1 = s.q_end * hd, k0 = s.kv_begin * hd, k1 = s.kv_end * hd;
  const bool first = layers.is_first(), last = layers.is_last(c.n_layers);
  for (const TensorDesc& d : stage_tensors(c, layers)) {
    LayerWeights* l = d.layer >= 0 ? &w.layers[size_t(d.layer - layers.begin)] : nullptr;
    ExpertWeights* x = d.expert >= 0 ? &l->experts.at(size_t(d.expert)) : nullptr;
    // Replicated matrices stay views of the file, as in a whole stage.
    auto whole = [&] { return matrix(lookup, d, w.bytes, be); };
    // A split tensor's file pages go once its slice is copied: a column slice reads every row,
    // and the kernel maps neighbouring pages of a file on each fault, so without this a member
    // would keep about as many of the file's pages resident as a whole stage.
    auto drop = [](const TensorRef& t) {
      if (t.file_mapped) drop_file_pages(t.data, size_t(t.nbytes));
    };
    auto rows = [&](int64_t b, int64_t e, bool keep_file_pages = false) {
      const TensorRef t = checked(lookup, d);
      const formats::WeightView v = copy_rows(w, t, b, e);
      if (!keep_file_pages) drop(t);
      return be.import_weights(v);
    };
    auto cols = [&](int64_t b, int64_t e) {
      const TensorRef t = checked(lookup, d);
      const formats::WeightView v = copy_cols(w, t, b, e);
      drop(t);
      return be.import_weights(v);
    };
    auto v = [&] { return vec(lookup, d, be); };
    auto vr = [&](int64_t b, int64_t e) { return vec_range(lookup, d, b, e, be); };
    switch (d.role) {
      case TensorRole::Embed:
        // A tied head is the embedding's vocabulary rows; the whole table only where tokens
        // are embedded.
        if (first) w.embed = whole();
        if (last && c.tie_embeddings) w.lm_head = rows(s.vocab_begin, s.vocab_end, first);
        break;
      case TensorRole::AttnNorm: l->attn_norm = v(); break;
      case TensorRole::Wq: l->wq = rows(q0, q1); break;
      case TensorRole::Bq: l->bq = vr(q0, q1); break;
      case TensorRole::Wk: l->wk = rows(k0, k1); break;
      case TensorRole::Bk: l->bk = vr(k0, k1); break;
      case TensorRole::Wv: l->wv = rows(k0, k1); break;
      case TensorRole::Bv: l->bv = vr(k0, k1); break;
      case TensorRole::QNorm: l->q_norm = v(); break;  // per head_dim: every head's
      case TensorRole::KNorm: l->k_norm = v(); break;
      case TensorRole::Wo: l->wo = cols(q0, q1); break;
      case TensorRole::MlpNorm: l->mlp_norm = v(); break;
      case TensorRole::WGate: l->w_gate = rows(s.inter_begin, s.inter_end); break;
      case TensorRole::WUp: l->w_up = rows(s.inter_begin, s.inter_end); break;
      case TensorRole::WDown: l->w_down = cols(s.inter_begin, s.inter_end); break;
      case TensorRole::Router: l->router = whole(); break;
      case TensorRole::ExpGate: x->w_gate = rows(s.moe_begin, s.moe_end); break;
      case TensorRole::ExpUp: x->w_up = rows(s.moe_begin, s.moe_end); break;
      case TensorRole::ExpDown: x->w_down = cols(s.moe_begin, s.moe_end); break;
      case TensorRole::ShGate: l->shared.w_gate = rows(s.shared_begin, s.shared_end); break;
      case TensorRole::ShUp: l->shared.w_up = rows(s.shared_begin, s.shared_end); break;
      case TensorRole::ShDown: l->shared.w_down = cols(s.shared_begin, s.shared_end); break;
      case TensorRole::ShScale: l->shared_scale = whole(); break;
      case TensorRole::FinalNorm: w.final_norm = v(); break;
      case TensorRole::LmHead: w.lm_head = rows(s.vocab_begin, s.vocab_end); break;
    }
  }
  return w;
}

}  // namespace

void StageWeights::FreeBytes::operator()(std::byte* p) const { ::operator delete[](p, align); }

StageWeights load_stage_weights(const SafetensorsSet& st, const ModelConfig& c, LayerRange layers,
                                backend::Backend& be) {
  return load_stage_weights(safetensors_lookup(st), c, layers, be);
}

StageWeights load_stage_weights(const TensorLookup& lookup, const ModelConfig& c, LayerRange layers,
                                backend::Backend& be, const TensorSplit* split) {
  if (split) return load_split(lookup, c, layers, be, *split);
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
