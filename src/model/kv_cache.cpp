#include "model/kv_cache.h"

#include <string>

#include "core/error.h"
#include "formats/activation_type.h"
#include "formats/weight_format.h"

namespace meshlm::model {

std::optional<WeightType> kv_type_from_name(std::string_view name) {
  return formats::activation_type_from_name(name);
}

std::string_view kv_type_name(WeightType type) { return formats::activation_type_name(type); }

int64_t kv_row_bytes(WeightType type, int64_t kv_dim) {
  if (!formats::is_activation_type(type))
    throw Error("kv", "no KV cache of type " + std::string(formats::name(type)) + " (cache types: " +
                          std::string(formats::activation_type_names()) + ")");
  const int64_t block = formats::info(type).block_elems;
  if (kv_dim <= 0 || kv_dim % block != 0)
    throw Error("kv", "a " + std::string(kv_type_name(type)) + " KV cache needs rows of whole " +
                          std::to_string(block) + "-value blocks; this stage's rows hold " +
                          std::to_string(kv_dim));
  return (int64_t(formats::row_bytes(type, kv_dim)) + 3) / 4 * 4;
}

KvCache::KvCache(backend::Backend& be, int64_t n_layers, int64_t kv_dim, int64_t max_context,
                 WeightType type)
    : be_(be),
      n_layers_(n_layers),
      kv_dim_(kv_dim),
      max_context_(max_context),
      type_(type),
      row_bytes_(kv_dim > 0 ? kv_row_bytes(type, kv_dim) : 0),
      row_floats_(row_bytes_ / 4) {}

KvCache::~KvCache() { release_all(); }

void KvCache::ensure(int64_t seq_id) {
  if (seqs_.count(seq_id)) return;
  Seq s;
  const size_t n = size_t(n_layers_) * 2 * size_t(max_context_) * size_t(row_floats_);
  try {
    s.mem = be_.reserve(n);
  } catch (const Error& e) {
    throw Error("kv", "cannot reserve " + std::to_string((n * sizeof(float)) >> 20) +
                          " MiB of KV cache: " + e.what());
  }
  seqs_.emplace(seq_id, std::move(s));
}

KvCache::Seq& KvCache::get(int64_t seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) throw Error("kv", "unknown sequence " + std::to_string(seq_id));
  return it->second;
}

float* KvCache::at(Seq& s, int64_t half, int64_t pos) const {
  return s.mem.data() + (size_t(half) * size_t(max_context_) + size_t(pos)) * size_t(row_floats_);
}

void KvCache::write(int64_t seq_id, int64_t layer, int64_t pos, const float* k, const float* v) {
  Seq& s = get(seq_id);
  be_.store_kv(at(s, 2 * layer, pos), type_, k, kv_dim_);
  be_.store_kv(at(s, 2 * layer + 1, pos), type_, v, kv_dim_);
}

void KvCache::will_write(int64_t seq_id, int64_t pos, int64_t n) {
  Seq& s = get(seq_id);
  if (pos < 0 || n <= 0 || pos + n > max_context_) return;
  for (int64_t h = 0; h < 2 * n_layers_; ++h) be_.will_write(at(s, h, pos), size_t(n * row_floats_));
}

const void* KvCache::key_row(int64_t seq_id, int64_t layer, int64_t pos) {
  return at(get(seq_id), 2 * layer, pos);
}

const void* KvCache::value_row(int64_t seq_id, int64_t layer, int64_t pos) {
  return at(get(seq_id), 2 * layer + 1, pos);
}

int64_t KvCache::length(int64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  return it == seqs_.end() ? 0 : it->second.length;
}

void KvCache::set_length(int64_t seq_id, int64_t n) { get(seq_id).length = n; }

void KvCache::release(int64_t seq_id) { seqs_.erase(seq_id); }

void KvCache::release_all() {
  seqs_.clear();
  blocks_.clear();
}

size_t KvCache::block_bytes() const {
  size_t n = 0;
  for (const auto& [id, b] : blocks_) n += b.mem.size() * sizeof(float);
  return n;
}

void KvCache::apply(const KvOp& op) {
  using Kind = KvOp::Kind;
  const size_t kv = size_t(row_floats_);
  switch (op.kind) {
    case Kind::DropAll:
      blocks_.clear();
      return;
    case Kind::Drop:
      blocks_.erase(op.block);
      return;
    case Kind::Save: {
      Seq& s = get(op.seq_id);
      if (op.pos < 0 || op.n_tokens <= 0 || int64_t(op.pos) + op.n_tokens > s.length)
        throw Error("kv", "cannot save positions " + std::to_string(op.pos) + "+" +
                              std::to_string(op.n_tokens) + " of sequence " +
                              std::to_string(op.seq_id) + ", which holds " +
                              std::to_string(s.length));
      if (blocks_.count(op.block))
        throw Error("kv", "prefix block " + std::to_string(op.block) + " exists already");
      Block b;
      b.n_tokens = op.n_tokens;
      const size_t run = size_t(op.n_tokens) * kv;
      b.mem = be_.alloc(size_t(n_layers_) * 2 * run);
      for (int64_t l = 0; l < 2 * n_layers_; ++l)
        be_.copy(b.mem.data() + size_t(l) * run, at(s, l, op.pos), run);
      blocks_.emplace(op.block, std::move(b));
      return;
    }
    case Kind::Restore: {
      auto it = blocks_.find(op.block);
      if (it == blocks_.end())
        throw Error("kv", "unknown prefix block " + std::to_string(op.block));
      const Block& b = it->second;
      if (b.n_tokens != op.n_tokens)
        throw Error("kv", "prefix block " + std::to_string(op.block) + " holds " +
                              std::to_string(b.n_tokens) + " positions, not " +
                              std::to_string(op.n_tokens));
      ensure(op.seq_id);
      Seq& s = get(op.seq_id);
      if (op.pos != s.length || int64_t(op.pos) + op.n_tokens > max_context_)
        throw Error("kv", "cannot restore positions " + std::to_string(op.pos) + "+" +
                              std::to_string(op.n_tokens) + " into sequence " +
                              std::to_string(op.seq_id) + ", which holds " +
                              std::to_string(s.length));
      const size_t run = size_t(op.n_tokens) * kv;
      will_write(op.seq_id, op.pos, op.n_tokens);
      for (int64_t l = 0; l < 2 * n_layers_; ++l)
        be_.copy(at(s, l, op.pos), b.mem.data() + size_t(l) * run, run);
      s.length = int64_t(op.pos) + op.n_tokens;
      return;
    }
  }
  throw Error("kv", "unknown KV operation " + std::to_string(int(op.kind)));
}

}  // namespace meshlm::model
