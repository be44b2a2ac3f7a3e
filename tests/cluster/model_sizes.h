// Shapes the planner tests share: a Qwen3-1.7B-like config of any depth, and the BF16 size of
// each of its tensors as a safetensors header would give them.
#pragma once

#include <string>

#include "cluster/planner.h"
#include "model/weights.h"

namespace meshlm::cluster::test {

inline model::ModelConfig qwen3_17b_dims(int64_t layers = 28, bool tied = true) {
  model::ModelConfig c;
  c.model_type = "qwen3";
  c.hidden = 2048;
  c.n_layers = layers;
  c.n_heads = 16;
  c.n_kv_heads = 8;
  c.head_dim = 128;
  c.intermediate = 6144;
  c.vocab = 151936;
  c.tie_embeddings = tied;
  c.qk_norm = true;
  return c;
}

inline TensorSizes bf16_sizes_of(const model::ModelConfig& c) {
  TensorSizes s;
  for (const auto& n : model::stage_tensor_names(c, {0, c.n_layers})) {
    uint64_t elems;
    if (n.find("embed_tokens") != std::string::npos || n.find("lm_head") != std::string::npos)
      elems = uint64_t(c.vocab * c.hidden);
    else if (n.find("norm") != std::string::npos)
      elems = uint64_t(n.find("q_norm") != std::string::npos || n.find("k_norm") != std::string::npos
                           ? c.head_dim : c.hidden);
    else if (n.find("mlp") != std::string::npos)
      elems = uint64_t(c.intermediate * c.hidden);
    else if (n.find("k_proj") != std::string::npos || n.find("v_proj") != std::string::npos)
      elems = uint64_t(c.kv_dim() * c.hidden);
    else
      elems = uint64_t(c.q_dim() * c.hidden);
    s[n] = elems * 2;
  }
  return s;
}

}  // namespace meshlm::cluster::test
