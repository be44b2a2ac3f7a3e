#include "model/kv_cache.h"

#include <string>

#include "core/error.h"

namespace meshlm::model {

KvCache::KvCache(backend::Backend& be, int64_t n_layers, int64_t kv_dim, int64_t max_context)
    : be_(be), n_layers_(n_layers), kv_dim_(kv_dim), max_context_(max_context) {}

KvCache::~KvCache() { release_all(); }

void KvCache::ensure(int64_t seq_id) {
  if (seqs_.count(seq_id)) return;
  Seq s;
  const size_t n = size_t(n_layers_) * 2 * size_t(max_context_) * size_t(kv_dim_);
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

float* KvCache::keys(int64_t seq_id, int64_t layer) {
  return get(seq_id).mem.data() + size_t(2 * layer) * size_t(max_context_) * size_t(kv_dim_);
}

float* KvCache::values(int64_t seq_id, int64_t layer) {
  return get(seq_id).mem.data() + size_t(2 * layer + 1) * size_t(max_context_) * size_t(kv_dim_);
}

int64_t KvCache::length(int64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  return it == seqs_.end() ? 0 : it->second.length;
}

void KvCache::set_length(int64_t seq_id, int64_t n) { get(seq_id).length = n; }

void KvCache::release(int64_t seq_id) { seqs_.erase(seq_id); }

void KvCache::release_all() { seqs_.clear(); }

}  // namespace meshlm::model
