#include "model/stage.h"

#include <cmath>

#include "core/error.h"
#include "core/log.h"
#include "core/mmap_file.h"
#include "kernels/kernels.h"
#include "model/kv_cache.h"
#include "model/safetensors.h"
#include "model/weights.h"

namespace meshlm::model {

struct Stage::Impl {
  ModelConfig cfg;
  LayerRange range;
  StageOptions opts;
  std::unique_ptr<SafetensorsSet> files;
  StageWeights w;
  std::vector<float> inv_freq;  // [head_dim / 2]
  KvCache kv;
  ThreadPool pool;

  // Activations, allocated once and grown to the largest micro-batch seen.
  std::vector<float> normed;   // [T, hidden]
  std::vector<float> q;        // [T, q_dim]
  std::vector<float> k, v;     // [T, kv_dim]
  std::vector<float> attn;     // [T, q_dim]
  std::vector<float> proj;     // [T, hidden]
  std::vector<float> gate, up; // [T, intermediate]
  std::vector<float> scratch;  // [threads, max_context] attention scores
  std::vector<int64_t> tok_seq, tok_pos;  // per token: sequence id, position

  Impl(const std::string& dir, LayerRange r, const StageOptions& o)
      : cfg(ModelConfig::from_dir(dir)),
        range(r),
        opts(o),
        files(SafetensorsSet::open_dir(dir)),
        w(load_stage_weights(*files, cfg, r)),
        inv_freq(cfg.rope_inv_freq()),
        kv(r.size(), cfg.kv_dim(), o.max_context),
        pool(o.threads) {
    scratch.resize(size_t(pool.size()) * size_t(o.max_context));
    if (o.lock_memory) lock_weights();
  }

  size_t locked = 0;

  // mlock every matrix of the stage (the small vectors are heap copies). Stops at the first
  // failure, with one warning that says how much was locked and why the rest was not.
  void lock_weights() {
    std::vector<const kernels::MatView*> mats;
    if (w.embed.data) mats.push_back(&w.embed);
    if (w.lm_head.data && w.lm_head.data != w.embed.data) mats.push_back(&w.lm_head);
    for (const auto& L : w.layers)
      for (const auto* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
        if (m->data) mats.push_back(m);
    for (const auto* m : mats) {
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

  void grow(int64_t T) {
    auto fit = [](std::vector<float>& b, int64_t n) {
      if (b.size() < size_t(n)) b.resize(size_t(n));
    };
    fit(normed, T * cfg.hidden);
    fit(q, T * cfg.q_dim());
    fit(k, T * cfg.kv_dim());
    fit(v, T * cfg.kv_dim());
    fit(attn, T * cfg.q_dim());
    fit(proj, T * cfg.hidden);
    fit(gate, T * cfg.intermediate);
    fit(up, T * cfg.intermediate);
  }

  void rmsnorm_rows(const float* x, const std::vector<float>& weight, int64_t rows, int64_t n,
                    float* out) {
    for (int64_t r = 0; r < rows; ++r) kernels::rmsnorm(x + r * n, weight.data(), n, cfg.rms_eps, out + r * n);
  }

  void layer(int64_t li, float* hidden, int64_t T) {
    const LayerWeights& L = w.layers[size_t(li)];
    const int64_t H = cfg.hidden, Q = cfg.q_dim(), KV = cfg.kv_dim(), hd = cfg.head_dim;
    const int64_t I = cfg.intermediate;
    // Attention block.
    rmsnorm_rows(hidden, L.attn_norm, T, H, normed.data());
    // q, k and v read the same input: one packing of it and one fork-join for the three.
    const kernels::MatmulOut qkv[] = {
        {L.wq, q.data(), L.bq.empty() ? nullptr : L.bq.data()},
        {L.wk, k.data(), L.bk.empty() ? nullptr : L.bk.data()},
        {L.wv, v.data(), L.bv.empty() ? nullptr : L.bv.data()}};
    kernels::matmul_multi(qkv, 3, normed.data(), T, pool);
    for (int64_t t = 0; t < T; ++t) {
      float* qt = q.data() + t * Q;
      float* kt = k.data() + t * KV;
      if (cfg.qk_norm) {
        for (int64_t h = 0; h < cfg.n_heads; ++h)
          kernels::rmsnorm(qt + h * hd, L.q_norm.data(), hd, cfg.rms_eps, qt + h * hd);
        for (int64_t h = 0; h < cfg.n_kv_heads; ++h)
          kernels::rmsnorm(kt + h * hd, L.k_norm.data(), hd, cfg.rms_eps, kt + h * hd);
      }
      kernels::rope(qt, cfg.n_heads, hd, tok_pos[size_t(t)], inv_freq.data());
      kernels::rope(kt, cfg.n_kv_heads, hd, tok_pos[size_t(t)], inv_freq.data());
      // Append to the sequence's cache.
      int64_t s = tok_seq[size_t(t)], p = tok_pos[size_t(t)];
      std::copy(kt, kt + KV, kv.keys(s, li) + p * KV);
      std::copy(v.data() + t * KV, v.data() + (t + 1) * KV, kv.values(s, li) + p * KV);
    }
    const int64_t group = cfg.n_heads / cfg.n_kv_heads;
    const float scale = 1.0f / std::sqrt(float(hd));
    // One head of one token per chunk: heads of sequences at different positions cost different
    // amounts, so they are taken from a shared counter rather than split evenly.
    pool.parallel_chunks(T * cfg.n_heads, 1, [&](int64_t i0, int64_t i1, int thread) {
      float* sc = scratch.data() + size_t(thread) * size_t(opts.max_context);
      for (int64_t i = i0; i < i1; ++i) {
        int64_t t = i / cfg.n_heads, h = i % cfg.n_heads, kvh = h / group;
        int64_t s = tok_seq[size_t(t)], p = tok_pos[size_t(t)];
        kernels::attention_head(q.data() + t * Q + h * hd, kv.keys(s, li) + kvh * hd,
                                kv.values(s, li) + kvh * hd, KV, p + 1, hd, scale,
                                attn.data() + t * Q + h * hd, sc);
      }
    });
    kernels::matmul(L.wo, attn.data(), T, proj.data(), nullptr, pool);
    kernels::add_inplace(hidden, proj.data(), T * H);
    // MLP block.
    rmsnorm_rows(hidden, L.mlp_norm, T, H, normed.data());
    const kernels::MatmulOut gate_up[] = {{L.w_gate, gate.data(), nullptr},
                                          {L.w_up, up.data(), nullptr}};
    kernels::matmul_multi(gate_up, 2, normed.data(), T, pool);
    kernels::silu_mul(gate.data(), up.data(), T * I, gate.data());
    kernels::matmul(L.w_down, gate.data(), T, proj.data(), nullptr, pool);
    kernels::add_inplace(hidden, proj.data(), T * H);
  }
};

Stage::Stage(const std::string& model_dir, LayerRange layers, const StageOptions& options)
    : impl_(std::make_unique<Impl>(model_dir, layers, options)) {}

Stage::~Stage() = default;

const ModelConfig& Stage::config() const { return impl_->cfg; }
LayerRange Stage::layers() const { return impl_->range; }
size_t Stage::weight_bytes() const { return impl_->w.bytes; }
size_t Stage::locked_bytes() const { return impl_->locked; }
size_t Stage::kv_bytes_per_token() const { return impl_->kv.bytes_per_token(); }
size_t Stage::kv_bytes_in_use() const {
  return size_t(impl_->kv.total_length()) * impl_->kv.bytes_per_token();
}
ThreadPool& Stage::pool() { return impl_->pool; }
void Stage::release(int64_t seq_id) { impl_->kv.release(seq_id); }
void Stage::release_all() { impl_->kv.release_all(); }
int64_t Stage::cached_tokens(int64_t seq_id) const { return impl_->kv.length(seq_id); }

int64_t Stage::logits_rows(std::span<const SeqChunk> chunks) {
  int64_t rows = 0;
  for (const auto& c : chunks) rows += c.all_logits ? c.n_tokens : (c.want_logits ? 1 : 0);
  return rows;
}

int64_t Stage::forward(std::span<const SeqChunk> chunks, std::span<const int32_t> tokens,
                       std::vector<float>& hidden, std::vector<float>& logits) {
  Impl& m = *impl_;
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
  int64_t t = 0;
  for (const auto& ch : chunks) {
    m.kv.ensure(ch.seq_id);
    for (int32_t i = 0; i < ch.n_tokens; ++i, ++t) {
      m.tok_seq[size_t(t)] = ch.seq_id;
      m.tok_pos[size_t(t)] = ch.pos + i;
    }
  }
  if (is_first())
    for (int64_t i = 0; i < T; ++i) kernels::embed_row(m.w.embed, tokens[size_t(i)], hidden.data() + i * H);
  for (int64_t li = 0; li < m.range.size(); ++li) m.layer(li, hidden.data(), T);
  for (const auto& ch : chunks) m.kv.set_length(ch.seq_id, ch.pos + ch.n_tokens);

  if (!is_last()) return 0;
  // Final norm + LM head for the rows asked for.
  int64_t rows = logits_rows(chunks);
  if (rows == 0) return 0;
  std::vector<float>& sel = m.proj;  // [rows, H] (rows <= T)
  int64_t r = 0;
  t = 0;
  for (const auto& ch : chunks) {
    for (int32_t i = 0; i < ch.n_tokens; ++i, ++t) {
      bool want = ch.all_logits || (ch.want_logits && i == ch.n_tokens - 1);
      if (!want) continue;
      kernels::rmsnorm(hidden.data() + t * H, m.w.final_norm.data(), H, c.rms_eps, sel.data() + r * H);
      ++r;
    }
  }
  logits.resize(size_t(rows * c.vocab));
  kernels::matmul(m.w.lm_head, sel.data(), rows, logits.data(), nullptr, m.pool);
  return rows;
}

}  // namespace meshlm::model
