// The weights of one stage, found through the tensor schema (model/schema.h). Matrices are views into the
// memory map (used by the kernels as stored: F32, BF16 or F16); small vectors (norm weights,
// biases) are converted to f32 copies.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/config.h"
#include "model/layer_range.h"
#include "model/schema.h"
#include "model/safetensors.h"

namespace meshlm::model {

struct LayerWeights {
  kernels::MatView wq, wk, wv, wo;          // [q_dim, hidden] [kv_dim, hidden] x2 [hidden, q_dim]
  kernels::MatView w_gate, w_up, w_down;    // [inter, hidden] x2, [hidden, inter]
  std::vector<float> attn_norm, mlp_norm;   // [hidden]
  std::vector<float> q_norm, k_norm;        // [head_dim] (qk_norm architectures)
  std::vector<float> bq, bk, bv;            // [q_dim] [kv_dim] [kv_dim] (qkv_bias architectures)
};

struct StageWeights {
  kernels::MatView embed;       // [vocab, hidden]; first stage
  kernels::MatView lm_head;     // [vocab, hidden]; last stage (== embed data when tied)
  std::vector<float> final_norm;  // [hidden]; last stage
  std::vector<LayerWeights> layers;  // layer_end - layer_begin entries
  size_t bytes = 0;             // bytes of mapped weights this stage uses
};

// The tensors of the stage holding `layers` (model/schema.h), checked against the schema's shapes
// and mapped. Throws Error("weights") / Error("safetensors") for a missing or mis-shaped tensor.
StageWeights load_stage_weights(const SafetensorsSet& st, const ModelConfig& c, LayerRange layers);

}  // namespace meshlm::model
