// The tensor schema: for a model configuration, every weight tensor it has — its Hugging Face
// and GGUF names, shape, role, the layer it belongs to, and along which axis it may be split for tensor
// parallelism. Weights, the planner, the tensor cache, model sync and `meshlm synth` all read
// this table; nothing else spells a tensor name.
//
// Every supported architecture is the same pre-norm decoder; the rows that differ are
// conditional on the architecture's traits (qk_norm, qkv_bias), on tie_word_embeddings and, for
// mixture-of-experts models, on whether a layer's MLP is dense or the experts (one row per expert).
// A new family either fits these rows (one line in architectures.cpp) or adds rows here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"
#include "model/layer_range.h"

namespace meshlm::model {

enum class TensorRole : uint8_t {
  Embed,      // [vocab, hidden]
  AttnNorm,   // [hidden]
  Wq, Bq,     // [q_dim, hidden], [q_dim]
  Wk, Bk,     // [kv_dim, hidden], [kv_dim]
  Wv, Bv,     // [kv_dim, hidden], [kv_dim]
  QNorm,      // [head_dim]
  KNorm,      // [head_dim]
  Wo,         // [hidden, q_dim]
  MlpNorm,    // [hidden]
  WGate,      // [intermediate, hidden]
  WUp,        // [intermediate, hidden]
  WDown,      // [hidden, intermediate]
  Router,     // [n_experts, hidden]  a MoE layer's router ("mlp.gate", Mixtral's "block_sparse_moe.gate")
  ExpGate,    // [moe_intermediate, hidden]  one per expert
  ExpUp,      // [moe_intermediate, hidden]  one per expert
  ExpDown,    // [hidden, moe_intermediate]  one per expert
  ShGate,     // [shared_expert_intermediate, hidden]  the shared expert (qwen2_moe)
  ShUp,       // [shared_expert_intermediate, hidden]
  ShDown,     // [hidden, shared_expert_intermediate]
  ShScale,    // [1, hidden]  shared_expert_gate: sigmoid(h . w) scales the shared expert
  FinalNorm,  // [hidden]
  LmHead,     // [vocab, hidden]
};

// How tensor parallelism may divide a tensor among its members.
enum class SplitAxis : uint8_t {
  None,  // replicated (norms, embeddings)
  Rows,  // by output features (column-parallel: q/k/v, gate/up and their biases, by heads)
  Cols,  // by input features (row-parallel: o_proj, down_proj; partial outputs are summed)
};

// What kind of values a tensor holds (how `meshlm synth` draws it, how a loader keeps it).
enum class TensorKind : uint8_t { Matrix, Embedding, Norm, Bias };

struct TensorDesc {
  TensorRole role;
  TensorKind kind;
  std::string name;       // Hugging Face (safetensors) name
  std::string gguf_name;  // llama.cpp's GGUF name ("blk.3.attn_q.weight")
  std::vector<int64_t> shape;  // row-major (GGUF files list the dimensions reversed)
  int64_t layer = -1;  // the decoder layer it belongs to; -1 for embedding, final norm, head
  // The expert it belongs to (ExpGate / ExpUp / ExpDown), -1 otherwise. GGUF files stack a layer's
  // experts into one 3-D tensor: gguf_name names that tensor, `expert` the slice.
  int64_t expert = -1;
  SplitAxis split = SplitAxis::None;
};

// Every tensor of the model, in the order Hugging Face files list them (what synth writes).
std::vector<TensorDesc> model_tensors(const ModelConfig& c);
// The tensors a stage holding `layers` reads, in the same order: its layers' tensors, the
// embedding on the first stage, the final norm and head on the last (the embedding again when
// the head is tied to it). Throws Error("weights") for an invalid range.
std::vector<TensorDesc> stage_tensors(const ModelConfig& c, LayerRange layers);
std::vector<std::string> stage_tensor_names(const ModelConfig& c, LayerRange layers);
// The name of a layer's tensor of this role (of expert `expert` for the per-expert roles), or of
// a global one (layer ignored), in the configuration's family (Mixtral names its experts apart).
std::string tensor_name(const ModelConfig& c, TensorRole role, int64_t layer = -1, int64_t expert = -1);
// MLX affine folders store a quantized matrix (a Matrix or Embedding row) as three tensors named
// after its module: the codes under the schema name ("model.layers.0.mlp.down_proj.weight") and
// the per-group scales and biases beside it ("...down_proj.scales", "...down_proj.biases").
// module_path: the name without ".weight" ("model.layers.0.mlp.down_proj"), the key of a
// per-module override in config.json's quantization; "" for a tensor that is not a ".weight".
enum class QuantPart : uint8_t { Scales, Biases };
std::string module_path(const TensorDesc& d);
std::string quant_part_name(const TensorDesc& d, QuantPart part);

// The decoder layer a tensor name belongs to, or -1 when it names no layer's tensor.
int64_t layer_of(std::string_view name);

}  // namespace meshlm::model
