#include "model/kv_cache.h"

#include <sys/mman.h>

#include <string>

#include "core/error.h"

namespace meshlm::model {

KvCache::KvCache(int64_t n_layers, int64_t kv_dim, int64_t max_context)
    : n_layers_(n_layers), kv_dim_(kv_dim), max_context_(max_context) {}

KvCache::~KvCache() { release_all(); }

void KvCache::ensure(int64_t seq_id) {
  if (seqs_.count(seq_id)) return;
  Seq s;
  s.bytes = size_t(n_layers_) * 2 * size_t(max_context_) * size_t(kv_dim_) * sizeof(float);
  if (s.bytes > 0) {
    void* p = ::mmap(nullptr, s.bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANON, -1, 0);
    if (p == MAP_FAILED)
      throw Error("kv", "cannot reserve " + std::to_string(s.bytes >> 20) + " MiB of KV cache");
    s.base = static_cast<float*>(p);
  }
  seqs_.emplace(seq_id, s);
}

KvCache::Seq& KvCache::get(int64_t seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) throw Error("kv", "unknown sequence " + std::to_string(seq_id));
  return it->second;
}

float* KvCache::keys(int64_t seq_id, int64_t layer) {
  return get(seq_id).base + size_t(2 * layer) * size_t(max_context_) * size_t(kv_dim_);
}

float* KvCache::values(int64_t seq_id, int64_t layer) {
  return get(seq_id).base + size_t(2 * layer + 1) * size_t(max_context_) * size_t(kv_dim_);
}

int64_t KvCache::length(int64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  return it == seqs_.end() ? 0 : it->second.length;
}

void KvCache::set_length(int64_t seq_id, int64_t n) { get(seq_id).length = n; }

void KvCache::release(int64_t seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return;
  if (it->second.base) ::munmap(it->second.base, it->second.bytes);
  seqs_.erase(it);
}

void KvCache::release_all() {
  for (auto& [id, s] : seqs_)
    if (s.base) ::munmap(s.base, s.bytes);
  seqs_.clear();
}

}  // namespace meshlm::model
