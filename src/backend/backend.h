// The compute backend: the one seam between the model (what a decoder layer computes) and the
// machine that computes it. A backend owns memory (activations, the KV cache, the small weight
// vectors; matrices stay views of the loaded file in whatever format they are stored) and runs
// the ops a decoder layer is made of. model/ talks to this interface only.
//
// Two backends exist today, both on the host CPU:
//   cpu  the optimised kernels (kernels/kernels.h: Highway SIMD chosen at run time + the thread
//        pool); the default.
//   ref  the scalar reference kernels (kernels/kernels_ref.h), one thread: obvious, slow, the
//        oracle the model tests compare the cpu backend with (`--backend ref`).
// A GPU backend would implement the same interface over device memory: every float* an op takes
// or returns is memory of the backend that ran it (for the host backends, ordinary pointers),
// moved to and from the host with upload()/download().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "formats/weight_format.h"

namespace meshlm::backend {

using formats::WeightView;

// A run of f32 values in a backend's memory. Move-only; frees itself.
class Buffer {
 public:
  using Free = std::function<void(float*, size_t)>;
  Buffer() = default;
  Buffer(float* data, size_t n, Free free) : data_(data), size_(n), free_(std::move(free)) {}
  ~Buffer() { reset(); }
  Buffer(Buffer&& o) noexcept : data_(o.data_), size_(o.size_), free_(std::move(o.free_)) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      data_ = o.data_;
      size_ = o.size_;
      free_ = std::move(o.free_);
      o.data_ = nullptr;
      o.size_ = 0;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  float* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void reset() {
    if (data_ && free_) free_(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }

 private:
  float* data_ = nullptr;
  size_t size_ = 0;
  Free free_;
};

// One output of a matmul: y[t, r] = x[t, :] . w[r, :] (+ bias[r]), y: [n_tok, w.rows].
struct MatmulOut {
  WeightView w;
  float* y = nullptr;
  const float* bias = nullptr;  // may be null
};

// Which values RoPE rotates together in a head of d values.
enum class RopeStyle : uint8_t {
  HalfSplit,    // (i, i + d/2): Hugging Face's rotate_half (GPT-NeoX style)
  Interleaved,  // (2i, 2i+1): GPT-J style, what llama.cpp's llama-family GGUFs are laid out for
};

// Grouped-query attention of a batch of tokens over their sequences' cached keys and values.
struct AttentionShape {
  int64_t n_heads = 0;     // query heads per token
  int64_t n_kv_heads = 0;  // key/value heads (n_heads is a multiple of it)
  int64_t head_dim = 0;
  float scale = 1.0f;      // applied to q.k before the softmax
  // How the cache stores a position: its n_kv_heads * head_dim keys (values likewise) in
  // kv_type (F32, BF16, F16 or Q8_0: kernels::kv_type_supported), one position kv_row_bytes
  // after the other (0: packed f32, n_kv_heads * head_dim floats).
  WeightType kv_type = WeightType::F32;
  int64_t kv_row_bytes = 0;
  int64_t row_bytes() const {
    return kv_row_bytes > 0 ? kv_row_bytes : n_kv_heads * head_dim * int64_t(sizeof(float));
  }
};
// Token t's view of its sequence: the keys of position j start row_bytes() * j bytes after k, KV
// head h's at formats::row_bytes(kv_type, h * head_dim) into the row (values likewise at v); the
// token sees keys [0, n_keys) (causal masking is the caller's: it passes only the keys the token
// may see).
struct AttentionKeys {
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t n_keys = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // "cpu" or "ref": what --backend takes.
  virtual std::string_view name() const = 0;
  // For logs and /health, e.g. "cpu (AVX2, 2 threads)".
  virtual std::string describe() const = 0;
  virtual int threads() const = 0;

  // --- memory ---------------------------------------------------------------------------------
  // n floats, zeroed. Throws Error("backend") when out of memory.
  virtual Buffer alloc(size_t n) = 0;
  // n floats reserved, committed only as they are first written (the KV cache: a sequence
  // reserves its whole context and pays for the positions it reaches), zeroed.
  virtual Buffer reserve(size_t n) = 0;
  // A hint that [dst, dst + n) of a reserve()d buffer is about to be written in full (a prefill
  // chunk's keys, a restored prefix): the host backends commit its pages in one call instead of
  // taking one page fault per page (on Linux 5.14+; elsewhere, or off, nothing).
  virtual void will_write(float* dst, size_t n) {}
  // Host <-> backend copies of n floats, and copies within the backend's memory.
  virtual void upload(float* dst, const float* host, size_t n) = 0;
  virtual void download(float* host, const float* src, size_t n) = 0;
  virtual void copy(float* dst, const float* src, size_t n) = 0;
  // n values of src (backend memory) stored into dst in a KV cache type (AttentionShape::kv_type):
  // what formats::quantize_row writes (F32: a copy). Throws Error("kv") where the type cannot
  // hold a value (inf or NaN, F16 overflow, a Q8_0 block scale beyond an f16's range).
  virtual void store_kv(void* dst, WeightType type, const float* src, int64_t n) = 0;
  // The matrices of a stage as this backend reads them: given a view of the loaded file (host
  // memory), a view the ops accept. The host backends read the file's bytes as they are.
  virtual WeightView import_weights(const WeightView& host) { return host; }
  // Waits until every op issued so far has finished (the host backends finish each op before
  // returning).
  virtual void synchronize() {}

  // --- ops --------------------------------------------------------------------------------------
  // Several matmuls that read the same x [n_tok, cols]; every w.cols equal, no y aliases x or
  // another y. The cpu backend gives each output (t, r) bit-identical values whatever n_tok and
  // thread count (kernels.h's determinism contract).
  virtual void matmul(std::span<const MatmulOut> outs, const float* x, int64_t n_tok) = 0;
  void matmul(const WeightView& w, const float* x, int64_t n_tok, float* y,
              const float* bias = nullptr) {
    const MatmulOut out{w, y, bias};
    matmul(std::span<const MatmulOut>(&out, 1), x, n_tok);
  }
  // Each of `rows` rows of n values: out = x / sqrt(mean(x^2) + eps) * weight. out may alias x.
  virtual void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t n, float eps,
                       float* out) = 0;
  // Rotary embedding of x [n_tok, n_heads, head_dim] in place, token t at position pos[t]: pair
  // i (of `style`) rotated by the angle pos * inv_freq[i].
  virtual void rope(float* x, int64_t n_tok, int64_t n_heads, int64_t head_dim,
                    const int64_t* pos, const float* inv_freq, RopeStyle style) = 0;
  // out [n_tok, n_heads, head_dim] = softmax(scale * q.k) v per head, for the n_tok tokens of q
  // [n_tok, n_heads, head_dim], token t over keys[t].
  virtual void attention(const float* q, int64_t n_tok, const AttentionKeys* keys,
                         const AttentionShape& shape, float* out) = 0;
  // out[i] = silu(gate[i]) * up[i]. out may alias gate or up.
  virtual void silu_mul(const float* gate, const float* up, int64_t n, float* out) = 0;
  // dst[i] += src[i]
  virtual void add(float* dst, const float* src, int64_t n) = 0;
  // dst[i] += scale * src[i], the product rounded before the sum (a mixture-of-experts layer
  // adds each selected expert's output, weighted by its router probability).
  virtual void add_scaled(float* dst, const float* src, float scale, int64_t n) = 0;
  // out[i, :] = table[ids[i], :] as f32, i < n (ids checked against table.rows by the caller).
  virtual void embed(const WeightView& table, const int32_t* ids, int64_t n, float* out) = 0;
};

// The backends this build has, in the order --backend lists them.
std::span<const std::string_view> names();
// A backend by name with `threads` threads (the ref backend always runs on the calling thread).
// Throws Error("backend", ...) naming the choices for an unknown name.
std::unique_ptr<Backend> create(std::string_view name, int threads);

}  // namespace meshlm::backend
