#include "model/stage.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "core/log.h"
#include "core/mmap_file.h"
#include "backend/backend.h"
#include "model/kv_cache.h"
#include "model/model_files.h"
#include "model/schema.h"
#include "model/weights.h"

namespace meshlm::model {

namespace {

// A tensor-parallel member's split: its shares from the options, the intermediate ranges on the
// largest block of the matrices split along them (their columns: down, the experts' down, the
// shared expert's down), as the files store them.
std::optional<TensorSplit> member_split(const ModelFiles& files, const ModelConfig& c,
                                        LayerRange r, const StageOptions& o) {
  if (!o.tensor_parallel) return std::nullopt;
  const StageOptions::TensorParallel& tp = *o.tensor_parallel;
  if (!tp.reducer) throw Error("tensor-parallel", "a tensor-parallel stage needs a reducer");
  SplitBlocks blocks;
  for (const TensorDesc& d : stage_tensors(c, r)) {
    int64_t* b = d.role == TensorRole::WDown     ? &blocks.inter
                 : d.role == TensorRole::ExpDown ? &blocks.moe
                 : d.role == TensorRole::ShDown  ? &blocks.shared
                                                 : nullptr;
    if (b) *b = std::max(*b, formats::info(files.tensor_type(d)).block_elems);
  }
  return split_for(c, tp.shares, tp.rank, blocks);
}

}  // namespace

// The options, once their cache type is known to fit the model: every KV head's keys must be
// whole blocks of the type (checked before the weights are read).
const StageOptions& checked_kv_type(const StageOptions& o, const ModelConfig& cfg) {
  kv_row_bytes(o.kv_type, cfg.n_kv_heads * cfg.head_dim);  // a cache type at all
  const int64_t block = formats::info(o.kv_type).block_elems;
  if (cfg.head_dim % block != 0)
    throw Error("stage", "--cache-type " + std::string(kv_type_name(o.kv_type)) +
                             " stores keys in blocks of " + std::to_string(block) +
                             " values; this model's head_dim is " + std::to_string(cfg.head_dim));
  return o;
}

struct Stage::Impl {
  std::unique_ptr<ModelFiles> files;
  ModelConfig cfg;
  LayerRange range;
  StageOptions opts;
  std::unique_ptr<backend::Backend> be;
  std::optional<TensorSplit> split;  // a tensor-parallel member's part; nullopt: whole stage
  TpReducer* reducer = nullptr;
  // This member's numbers of heads and intermediate sizes (the model's for a whole stage).
  int64_t n_heads, n_kv_heads, inter, moe_inter, shared_inter;
  StageWeights w;
  backend::Buffer inv_freq;  // [head_dim / 2]
  KvCache kv;

  // Activations in the backend's memory, allocated once and grown to the largest micro-batch.
  backend::Buffer x;           // [T, hidden] the residual stream
  backend::Buffer normed;      // [T, hidden]
  backend::Buffer q;           // [T, q_dim]
  backend::Buffer k, v;        // [T, kv_dim]
  backend::Buffer attn;        // [T, q_dim]
  backend::Buffer proj;        // [T, hidden]
  backend::Buffer gate, up;    // [T, max(intermediate, moe_intermediate)]
  backend::Buffer logits;      // [rows, vocab]
  // Mixture-of-experts layers: router logits, and one expert's tokens gathered / its output.
  backend::Buffer router_logits;         // [T, n_experts]
  backend::Buffer expert_in, expert_out;  // [T, hidden]
  std::vector<float> host_router, zeros;  // host copies: routing is decided on the host
  backend::Buffer shared_logit;           // [T] the shared expert's gate (qwen2_moe)
  std::vector<float> host_shared;
  std::vector<std::vector<std::pair<int64_t, float>>> expert_tokens;  // per expert: (token, weight)
  std::vector<int64_t> tok_seq, tok_pos;        // per token: sequence id, position
  std::vector<backend::AttentionKeys> tok_keys;  // per token: its sequence's cache (one layer)

  Impl(const std::string& dir, LayerRange r, const StageOptions& o)
      : files(ModelFiles::open(dir)),
        cfg(files->config()),
        range(r),
        opts(checked_kv_type(o, cfg)),
        be(backend::create(o.backend, o.threads)),
        split(member_split(*files, cfg, r, o)),
        reducer(split ? o.tensor_parallel->reducer.get() : nullptr),
        n_heads(split ? split->n_heads() : cfg.n_heads),
        n_kv_heads(split ? split->n_kv_heads() : cfg.n_kv_heads),
        inter(split ? split->inter() : cfg.intermediate),
        moe_inter(split ? split->moe_inter() : cfg.moe_intermediate),
        shared_inter(split ? split->shared_inter() : cfg.shared_expert_intermediate),
        w(load_stage_weights(files->lookup(), cfg, r, *be, split ? &*split : nullptr)),
        kv(*be, r.size(), n_kv_heads * cfg.head_dim, o.max_context, o.kv_type) {
    const std::vector<float> f = cfg.rope_inv_freq();
    inv_freq = be->alloc(f.size());
    be->upload(inv_freq.data(), f.data(), f.size());
    map_on_huge_pages();
    if (o.lock_memory) lock_weights();
  }

  size_t locked = 0;

  // Every matrix of the stage (the small vectors are heap copies); the embedding only when
  // asked (a lookup reads a few rows of it per token) or when it is also the LM head.
  std::vector<const formats::WeightView*> matrices(bool with_embedding) const {
    std::vector<const formats::WeightView*> mats;
    if (w.embed.data && (with_embedding || w.lm_head.data == w.embed.data)) mats.push_back(&w.embed);
    if (w.lm_head.data && w.lm_head.data != w.embed.data) mats.push_back(&w.lm_head);
    for (const auto& L : w.layers) {
      for (const auto* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down, &L.router})
        if (m->data) mats.push_back(m);
      for (const auto& e : L.experts)
        for (const auto* m : {&e.w_gate, &e.w_up, &e.w_down})
          if (m->data) mats.push_back(m);
      for (const auto* m : {&L.shared.w_gate, &L.shared.w_up, &L.shared.w_down, &L.shared_scale})
        if (m->data) mats.push_back(m);
    }
    return mats;
  }

  // The stage's file-mapped weights on 2 MB pages (core/mmap_file.h: read in now, and re-read
  // once where the page cache holds them in 4 KB folios).
  void map_on_huge_pages() {
    std::vector<MemoryRegion> regions;
    for (const auto* m : matrices(false))
      regions.push_back({m->data, size_t(m->rows) * formats::row_bytes(m->dtype, m->cols)});
    const HugePageReport rep = map_weights_on_huge_pages(regions);
    if (rep.bytes < kHugePageMinBytes) return;
    if (rep.reread) {
      log::info("[stage] layers [{}, {}): {} of {} MiB of file-mapped weights on 2 MB pages "
                "after re-reading them ({:.1f} s; the page cache held them in 4 KB pages, {} MiB "
                "on 2 MB pages before; MESHLM_HUGE_PAGES=0 skips this)",
                range.begin, range.end, rep.huge_after >> 20, rep.bytes >> 20, rep.seconds,
                rep.huge_before >> 20);
    } else {
      log::debug("[stage] layers [{}, {}): {} of {} MiB of file-mapped weights on 2 MB pages",
                 range.begin, range.end, rep.huge_after >> 20, rep.bytes >> 20);
    }
  }

  // mlock every matrix of the stage. Stops at the first failure, with one warning that says
  // how much was locked and why the rest was not.
  void lock_weights() {
    for (const auto* m : matrices(true)) {
      const size_t n = size_t(m->rows) * formats::row_bytes(m->dtype, m->cols);
      std::string err = lock_pages(m->data, n);
      if (!err.empty()) {
        log::warn("[stage] --mlock: locked {} MiB of layers [{}, {}) weights, then: {}",
                  locked >> 20, range.begin, range.end, err);
        return;
      }
      locked += n;
    }
    log::info("[stage] --mlock: {} MiB of weights of layers [{}, {}) locked in RAM", locked >> 20,
              range.begin, range.end);
  }

  void fit(backend::Buffer& b, int64_t n) {
    if (b.size() < size_t(n)) b = be->alloc(size_t(n));
  }

  void grow(int64_t T) {
    fit(x, T * cfg.hidden);
    fit(normed, T * cfg.hidden);
    fit(q, T * cfg.q_dim());
    fit(k, T * cfg.kv_dim());
    fit(v, T * cfg.kv_dim());
    fit(attn, T * cfg.q_dim());
    fit(proj, T * cfg.hidden);
    const int64_t inter =
        std::max({cfg.intermediate, cfg.moe_intermediate, cfg.shared_expert_intermediate});
    fit(gate, T * inter);
    fit(up, T * inter);
    if (cfg.is_moe()) {
      fit(router_logits, T * cfg.n_experts);
      fit(shared_logit, T);
      fit(expert_in, T * cfg.hidden);
      fit(expert_out, T * cfg.hidden);
    }
  }

  static const float* opt(const backend::Buffer& b) { return b.empty() ? nullptr : b.data(); }

  // A tensor-parallel member's partial output [n] (o_proj's, the MLP's) becomes the sum over
  // members. Through host memory: the reducer's collectives read and write host floats. Every
  // member adds the same sum to the same residual, so the members stay identical. (No
  // row-parallel projection of the supported architectures has a bias; one would be added
  // after this sum, once.)
  std::vector<float> host_reduce;
  void reduce(float* partial, int64_t n) {
    if (!reducer) return;
    host_reduce.resize(size_t(n));
    be->download(host_reduce.data(), partial, size_t(n));
    reducer->all_reduce_sum(host_reduce.data(), size_t(n));
    be->upload(partial, host_reduce.data(), size_t(n));
  }

  void layer(int64_t li, int64_t T) {
    backend::Backend& B = *be;
    const LayerWeights& L = w.layers[size_t(li)];
    const int64_t hd = cfg.head_dim;
    const int64_t H = cfg.hidden, KV = n_kv_heads * hd;
    float* hidden = x.data();
    // Attention block.
    B.rmsnorm(hidden, L.attn_norm.data(), T, H, cfg.rms_eps, normed.data());
    // q, k and v read the same input: one matmul call for the three.
    const backend::MatmulOut qkv[] = {{L.wq, q.data(), opt(L.bq)},
                                      {L.wk, k.data(), opt(L.bk)},
                                      {L.wv, v.data(), opt(L.bv)}};
    B.matmul(qkv, normed.data(), T);
    if (cfg.qk_norm) {
      B.rmsnorm(q.data(), L.q_norm.data(), T * n_heads, hd, cfg.rms_eps, q.data());
      B.rmsnorm(k.data(), L.k_norm.data(), T * n_kv_heads, hd, cfg.rms_eps, k.data());
    }
    const backend::RopeStyle style =
        cfg.rope_interleaved ? backend::RopeStyle::Interleaved : backend::RopeStyle::HalfSplit;
    B.rope(q.data(), T, n_heads, hd, tok_pos.data(), inv_freq.data(), style);
    B.rope(k.data(), T, n_kv_heads, hd, tok_pos.data(), inv_freq.data(), style);
    // Append to each sequence's cache; each token then sees its sequence up to itself (in a
    // sliding-window layer, its last `window` positions).
    const int64_t window = cfg.window(range.begin + li);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t s = tok_seq[size_t(t)], p = tok_pos[size_t(t)];
      kv.write(s, li, p, k.data() + t * KV, v.data() + t * KV);
      const int64_t from = window > 0 ? std::max<int64_t>(0, p + 1 - window) : 0;
      tok_keys[size_t(t)] = {kv.key_row(s, li, from), kv.value_row(s, li, from), p + 1 - from};
    }
    const backend::AttentionShape shape{n_heads, n_kv_heads, hd, 1.0f / std::sqrt(float(hd)),
                                        kv.type(), kv.row_bytes()};
    B.attention(q.data(), T, tok_keys.data(), shape, attn.data());
    B.matmul(L.wo, attn.data(), T, proj.data());
    reduce(proj.data(), T * H);
    B.add(hidden, proj.data(), T * H);
    // MLP block.
    B.rmsnorm(hidden, L.mlp_norm.data(), T, H, cfg.rms_eps, normed.data());
    if (!L.experts.empty()) {
      experts(L, T);
    } else {
      mlp(L.w_gate, L.w_up, L.w_down, normed.data(), T, inter, proj.data());
    }
    reduce(proj.data(), T * H);  // a MoE layer's routed and shared experts in one sum
    B.add(hidden, proj.data(), T * H);
  }

  // out [T, hidden] = down(silu(gate(x)) * up(x)) for x [T, hidden], inner size `inner`.
  void mlp(const formats::WeightView& w_gate, const formats::WeightView& w_up,
           const formats::WeightView& w_down, const float* in, int64_t T, int64_t inner, float* out) {
    backend::Backend& B = *be;
    if (inner == 0) {  // a tensor-parallel member with no block of this intermediate: adds 0
      zeros.assign(size_t(T * cfg.hidden), 0.0f);
      B.upload(out, zeros.data(), zeros.size());
      return;
    }
    const backend::MatmulOut gate_up[] = {{w_gate, gate.data(), nullptr}, {w_up, up.data(), nullptr}};
    B.matmul(gate_up, in, T);
    B.silu_mul(gate.data(), up.data(), T * inner, gate.data());
    B.matmul(w_down, gate.data(), T, out);
  }

  // A mixture-of-experts MLP (qwen3_moe, qwen2_moe): proj = sum over each token's top-k experts of
  // weight x expert(normed). The router's softmax and top-k run on the host from that token's
  // logits alone (ties to the lower expert index), and each token adds its experts' outputs in
  // increasing expert order, so a token's result does not depend on what else is in the batch.
  // Each selected expert runs once, over all of its tokens gathered into one matmul.
  void experts(const LayerWeights& L, int64_t T) {
    backend::Backend& B = *be;
    const int64_t H = cfg.hidden, E = cfg.n_experts, K = cfg.n_experts_used;
    B.matmul(L.router, normed.data(), T, router_logits.data());
    host_router.resize(size_t(T * E));
    B.download(host_router.data(), router_logits.data(), host_router.size());
    expert_tokens.resize(size_t(E));
    for (auto& v : expert_tokens) v.clear();
    std::vector<double> p(static_cast<size_t>(E));
    std::vector<int64_t> order(static_cast<size_t>(E));
    for (int64_t t = 0; t < T; ++t) {
      const float* z = host_router.data() + t * E;
      const double zmax = *std::max_element(z, z + E);
      double sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += p[size_t(e)] = std::exp(double(z[e]) - zmax);
      for (auto& v : p) v /= sum;
      std::iota(order.begin(), order.end(), int64_t{0});
      std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int64_t a, int64_t b) {
        return p[size_t(a)] > p[size_t(b)] || (p[size_t(a)] == p[size_t(b)] && a < b);
      });
      double kept = 0;
      for (int64_t i = 0; i < K; ++i) kept += p[size_t(order[size_t(i)])];
      for (int64_t i = 0; i < K; ++i) {
        const int64_t e = order[size_t(i)];
        const double weight = cfg.norm_topk_prob ? p[size_t(e)] / kept : p[size_t(e)];
        expert_tokens[size_t(e)].push_back({t, float(weight)});
      }
    }
    zeros.resize(size_t(T * H), 0.0f);
    B.upload(proj.data(), zeros.data(), size_t(T * H));
    // A tensor-parallel member runs every chosen expert on its slice of moe_intermediate (none
    // when it has no block of it); the members' partial sums are added by layer().
    for (int64_t e = 0; e < E && moe_inter > 0; ++e) {
      const auto& toks = expert_tokens[size_t(e)];
      if (toks.empty()) continue;  // an expert nobody chose is never read
      const int64_t n = int64_t(toks.size());
      for (int64_t i = 0; i < n; ++i)
        B.copy(expert_in.data() + i * H, normed.data() + toks[size_t(i)].first * H, size_t(H));
      const ExpertWeights& X = L.experts[size_t(e)];
      mlp(X.w_gate, X.w_up, X.w_down, expert_in.data(), n, moe_inter, expert_out.data());
      for (int64_t i = 0; i < n; ++i)
        B.add_scaled(proj.data() + toks[size_t(i)].first * H, expert_out.data() + i * H,
                     toks[size_t(i)].second, H);
    }
    // The shared expert (qwen2_moe): every token, scaled by sigmoid(h . shared_expert_gate),
    // added after the routed experts.
    // A member with no part of the shared expert (its slice empty) skips it: its share is 0.
    if (L.shared.w_gate.data) {
      mlp(L.shared.w_gate, L.shared.w_up, L.shared.w_down, normed.data(), T, shared_inter,
          expert_out.data());
      B.matmul(L.shared_scale, normed.data(), T, shared_logit.data());
      host_shared.resize(size_t(T));
      B.download(host_shared.data(), shared_logit.data(), host_shared.size());
      for (int64_t t = 0; t < T; ++t) {
        const float scale = float(1.0 / (1.0 + std::exp(-double(host_shared[size_t(t)]))));
        B.add_scaled(proj.data() + t * H, expert_out.data() + t * H, scale, H);
      }
    }
  }

  // A tensor-parallel member's LM head: the logits of its vocabulary rows [rows, V_r], gathered
  // from every member into the full [rows, vocab] on member 0 (on every member with
  // logits_on_every_member; the others get none). A row whose chunk asked for its top values
  // alone (SeqChunk::top_logits = k) moves as each member's k best (id, value) pairs and, with
  // top_log_z, its slice's log-sum-exp; member 0 writes them into a row of -inf and combines the
  // log-sum-exps. Each member's part: [vocab_begin, V_r, then per row its slice or its pairs
  // (+ the log-sum-exp as two floats, high and low)]; ids and counts are floats (exact below 2^24).
  void gather_logits(const float* sel, int64_t rows, std::span<const int32_t> top,
                     std::span<const uint8_t> want_log_z, std::vector<float>& out,
                     std::vector<double>* row_log_z) {
    backend::Backend& B = *be;
    const int64_t V = cfg.vocab, Vl = split->vocab(), v0 = split->vocab_begin;
    if (V >= (int64_t{1} << 24))
      throw Error("tensor-parallel", "a vocabulary of " + std::to_string(V) +
                                         " entries is too large to gather (2^24 at most)");
    fit(logits, rows * Vl);
    B.matmul(w.lm_head, sel, rows, logits.data());
    std::vector<float> slice(size_t(rows * Vl));
    B.download(slice.data(), logits.data(), slice.size());
    B.synchronize();
    std::vector<float> mine{float(v0), float(Vl)};
    mine.reserve(slice.size() + 2);
    std::vector<int32_t> idx;
    for (int64_t i = 0; i < rows; ++i) {
      const float* row = slice.data() + i * Vl;
      if (top[size_t(i)] <= 0) {
        mine.insert(mine.end(), row, row + Vl);
        continue;
      }
      const int64_t k = std::min<int64_t>(top[size_t(i)], Vl);
      idx.resize(size_t(Vl));
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [row](int32_t a, int32_t b) {
        return row[a] > row[b] || (row[a] == row[b] && a < b);
      });
      for (int64_t j = 0; j < k; ++j) {
        mine.push_back(float(v0 + idx[size_t(j)]));
        mine.push_back(row[idx[size_t(j)]]);
      }
      if (want_log_z[size_t(i)]) {
        const float mx = Vl > 0 ? row[idx[0]] : -std::numeric_limits<float>::infinity();
        double z = 0;
        for (int64_t j = 0; j < Vl; ++j) z += std::exp(double(row[j]) - mx);
        const double lz = std::log(z) + mx;
        const float hi = float(lz);
        mine.push_back(hi);
        mine.push_back(float(lz - double(hi)));
      }
    }
    std::vector<size_t> counts;
    const auto& tp = *opts.tensor_parallel;
    const std::vector<float> all = tp.logits_on_every_member
                                       ? reducer->all_gather(mine, &counts)
                                       : reducer->gather_to_first(mine, &counts);
    if (!tp.logits_on_every_member && tp.rank != 0) {
      out.clear();
      if (row_log_z) row_log_z->clear();
      return;
    }
    const float ninf = -std::numeric_limits<float>::infinity();
    out.resize(size_t(rows * V));
    for (int64_t i = 0; i < rows; ++i)
      if (top[size_t(i)] > 0) std::fill_n(out.data() + i * V, size_t(V), ninf);
    // Per row: the members' log-sum-exps, combined after the loop.
    std::vector<std::vector<double>> parts(static_cast<size_t>(rows));
    auto bad = [] { throw Error("tensor-parallel", "gathered logits do not fit the vocabulary"); };
    int64_t col = 0;
    size_t base = 0;
    for (size_t n : counts) {
      const float* p = all.data() + base;
      const float* end = p + n;
      // Whole numbers within the vocabulary (checked as floats first: a cast of anything else
      // is undefined).
      auto whole = [V](float x) { return x >= 0 && x <= float(V) && x == std::floor(x); };
      if (n < 2 || !whole(p[0]) || !whole(p[1])) bad();
      const int64_t begin = int64_t(p[0]), Vr = int64_t(p[1]);
      if (begin != col || col + Vr > V) bad();
      p += 2;
      for (int64_t i = 0; i < rows; ++i) {
        float* dst = out.data() + i * V;
        if (top[size_t(i)] <= 0) {
          if (end - p < Vr) bad();
          std::copy_n(p, size_t(Vr), dst + col);
          p += Vr;
          continue;
        }
        const int64_t k = std::min<int64_t>(top[size_t(i)], Vr);
        if (end - p < 2 * k + (want_log_z[size_t(i)] ? 2 : 0)) bad();
        for (int64_t j = 0; j < k; ++j, p += 2) {
          if (!whole(p[0])) bad();
          const int64_t id = int64_t(p[0]);
          if (id < col || id >= col + Vr) bad();
          dst[id] = p[1];
        }
        if (want_log_z[size_t(i)]) {
          if (Vr > 0) parts[size_t(i)].push_back(double(p[0]) + double(p[1]));
          p += 2;
        }
      }
      if (p != end) bad();
      col += Vr;
      base += n;
    }
    if (col != V)
      throw Error("tensor-parallel", "gathered logits cover " + std::to_string(col) + " of " +
                                         std::to_string(V) + " vocabulary entries");
    if (!row_log_z) return;
    row_log_z->assign(size_t(rows), std::numeric_limits<double>::quiet_NaN());
    for (int64_t i = 0; i < rows; ++i) {
      const auto& lz = parts[size_t(i)];
      if (lz.empty()) continue;
      const double mx = *std::max_element(lz.begin(), lz.end());
      double z = 0;
      for (double x : lz) z += std::exp(x - mx);
      (*row_log_z)[size_t(i)] = std::log(z) + mx;
    }
  }
};

Stage::Stage(const std::string& model_dir, LayerRange layers, const StageOptions& options)
    : impl_(std::make_unique<Impl>(model_dir, layers, options)) {}

Stage::~Stage() = default;

const ModelConfig& Stage::config() const { return impl_->cfg; }
LayerRange Stage::layers() const { return impl_->range; }
size_t Stage::weight_bytes() const { return impl_->w.bytes; }
const TensorSplit* Stage::tensor_split() const {
  return impl_->split ? &*impl_->split : nullptr;
}
size_t Stage::locked_bytes() const { return impl_->locked; }
size_t Stage::kv_bytes_per_token() const { return impl_->kv.bytes_per_token(); }
WeightType Stage::kv_type() const { return impl_->kv.type(); }
size_t Stage::kv_bytes_in_use() const {
  return size_t(impl_->kv.total_length()) * impl_->kv.bytes_per_token() + impl_->kv.block_bytes();
}
size_t Stage::prefix_block_bytes() const { return impl_->kv.block_bytes(); }
void Stage::apply_kv_ops(std::span<const KvOp> ops, bool after_forward) {
  for (const KvOp& op : ops)
    if (runs_after_forward(op) == after_forward) impl_->kv.apply(op);
}
std::string Stage::backend_description() const { return impl_->be->describe(); }
void Stage::release(int64_t seq_id) { impl_->kv.release(seq_id); }
void Stage::release_all() { impl_->kv.release_all(); }
int64_t Stage::cached_tokens(int64_t seq_id) const { return impl_->kv.length(seq_id); }

int64_t Stage::logits_rows(std::span<const SeqChunk> chunks) {
  int64_t rows = 0;
  for (const auto& c : chunks) rows += c.all_logits ? c.n_tokens : (c.want_logits ? 1 : 0);
  return rows;
}

int64_t Stage::forward(std::span<const SeqChunk> chunks, std::span<const int32_t> tokens,
                       std::vector<float>& hidden, std::vector<float>& logits,
                       std::vector<double>* row_log_z) {
  Impl& m = *impl_;
  if (row_log_z) row_log_z->clear();
  const ModelConfig& c = m.cfg;
  const int64_t H = c.hidden;
  // Validate the whole micro-batch before touching any state.
  int64_t T = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const SeqChunk& ch = chunks[i];
    if (ch.n_tokens <= 0) throw Error("stage", "chunk with no tokens");
    for (size_t j = 0; j < i; ++j)
      if (chunks[j].seq_id == ch.seq_id)
        throw Error("stage", "sequence " + std::to_string(ch.seq_id) + " appears twice in one batch");
    int64_t have = m.kv.length(ch.seq_id);
    if (ch.pos != have)
      throw Error("stage", "sequence " + std::to_string(ch.seq_id) + " chunk starts at position " +
                               std::to_string(ch.pos) + " but " + std::to_string(have) +
                               " tokens are cached");
    if (int64_t(ch.pos) + ch.n_tokens > m.opts.max_context)
      throw Error("stage", "sequence " + std::to_string(ch.seq_id) + " would reach " +
                               std::to_string(int64_t(ch.pos) + ch.n_tokens) +
                               " tokens, beyond the context of " + std::to_string(m.opts.max_context));
    T += ch.n_tokens;
  }
  if (int64_t(tokens.size()) != T)
    throw Error("stage", "batch has " + std::to_string(T) + " positions but " +
                             std::to_string(tokens.size()) + " token ids");
  for (int32_t id : tokens)
    if (id < 0 || id >= c.vocab)
      throw Error("stage", "token id " + std::to_string(id) + " outside the vocabulary (" +
                               std::to_string(c.vocab) + ")");
  if (is_first()) {
    hidden.resize(size_t(T * H));
  } else if (int64_t(hidden.size()) != T * H) {
    throw Error("stage", "activations have " + std::to_string(hidden.size()) + " values, expected " +
                             std::to_string(T * H));
  }

  m.grow(T);
  m.tok_seq.resize(size_t(T));
  m.tok_pos.resize(size_t(T));
  m.tok_keys.resize(size_t(T));
  int64_t t = 0;
  for (const auto& ch : chunks) {
    m.kv.ensure(ch.seq_id);
    // A prefill chunk's KV pages committed in one call per layer half instead of a page fault
    // per page (a decode step's single position faults its pages as before).
    if (ch.n_tokens >= 16) m.kv.will_write(ch.seq_id, ch.pos, ch.n_tokens);
    for (int32_t i = 0; i < ch.n_tokens; ++i, ++t) {
      m.tok_seq[size_t(t)] = ch.seq_id;
      m.tok_pos[size_t(t)] = ch.pos + i;
    }
  }
  backend::Backend& B = *m.be;
  if (is_first())
    B.embed(m.w.embed, tokens.data(), T, m.x.data());
  else
    B.upload(m.x.data(), hidden.data(), size_t(T * H));
  for (int64_t li = 0; li < m.range.size(); ++li) m.layer(li, T);
  for (const auto& ch : chunks) m.kv.set_length(ch.seq_id, ch.pos + ch.n_tokens);

  B.download(hidden.data(), m.x.data(), size_t(T * H));
  if (!is_last()) {
    B.synchronize();
    return 0;
  }
  // Final norm + LM head for the rows asked for.
  int64_t rows = logits_rows(chunks);
  if (rows == 0) {
    B.synchronize();
    return 0;
  }
  float* sel = m.proj.data();  // [rows, H] (rows <= T)
  int64_t r = 0;
  t = 0;
  for (const auto& ch : chunks) {
    for (int32_t i = 0; i < ch.n_tokens; ++i, ++t) {
      bool want = ch.all_logits || (ch.want_logits && i == ch.n_tokens - 1);
      if (!want) continue;
      B.rmsnorm(m.x.data() + t * H, m.w.final_norm.data(), 1, H, c.rms_eps, sel + r * H);
      ++r;
    }
  }
  if (m.reducer) {
    // Per row: how many top values its chunk asked for (0: the whole row), and its log-sum-exp.
    std::vector<int32_t> top;
    std::vector<uint8_t> want_log_z;
    top.reserve(size_t(rows));
    for (const auto& ch : chunks) {
      if (ch.all_logits) {
        top.insert(top.end(), size_t(ch.n_tokens), 0);
        want_log_z.insert(want_log_z.end(), size_t(ch.n_tokens), 0);
      } else if (ch.want_logits) {
        top.push_back(std::max(ch.top_logits, 0));
        want_log_z.push_back(ch.top_logits > 0 && ch.top_log_z);
      }
    }
    m.gather_logits(sel, rows, top, want_log_z, logits, row_log_z);
    return rows;
  }
  if (row_log_z) row_log_z->assign(size_t(rows), std::numeric_limits<double>::quiet_NaN());
  m.fit(m.logits, rows * c.vocab);
  B.matmul(m.w.lm_head, sel, rows, m.logits.data());
  logits.resize(size_t(rows * c.vocab));
  B.download(logits.data(), m.logits.data(), logits.size());
  B.synchronize();
  return rows;
}

}  // namespace meshlm::model
