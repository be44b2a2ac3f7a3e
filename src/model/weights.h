// The weights of one stage, found through the tensor schema (model/schema.h). Matrices are views
// of the loaded file in their stored format, as the backend reads them (import_weights); a
// tensor-parallel member's split matrices are copies of its slices, in the same format. Small
// vectors (norm weights, biases) are converted to f32 buffers of the backend.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/layer_range.h"
#include "model/model_files.h"
#include "model/schema.h"
#include "model/safetensors.h"
#include "model/tensor_split.h"

namespace meshlm::model {

// One expert of a mixture-of-experts layer: a SiLU-gated MLP of moe_intermediate.
struct ExpertWeights {
  formats::WeightView w_gate, w_up, w_down;  // [moe_inter, hidden] x2, [hidden, moe_inter]
};

struct LayerWeights {
  formats::WeightView wq, wk, wv, wo;        // [q_dim, hidden] [kv_dim, hidden] x2 [hidden, q_dim]
  formats::WeightView w_gate, w_up, w_down;  // [inter, hidden] x2, [hidden, inter]; dense layers
  formats::WeightView router;                // [n_experts, hidden]; MoE layers
  std::vector<ExpertWeights> experts;        // n_experts; MoE layers
  ExpertWeights shared;                      // the shared expert (qwen2_moe), else empty views
  formats::WeightView shared_scale;          // [1, hidden] shared_expert_gate
  backend::Buffer attn_norm, mlp_norm;       // [hidden]
  backend::Buffer q_norm, k_norm;            // [head_dim] (qk_norm architectures)
  backend::Buffer bq, bk, bv;                // [q_dim] [kv_dim] [kv_dim] (qkv_bias architectures)
};

struct StageWeights {
  formats::WeightView embed;    // [vocab, hidden]; first stage
  formats::WeightView lm_head;  // [vocab, hidden]; last stage (== embed data when tied)
  backend::Buffer final_norm;   // [hidden]; last stage
  std::vector<LayerWeights> layers;  // layer_end - layer_begin entries
  size_t bytes = 0;             // bytes of mapped weights this stage uses
  // A tensor-parallel member's slices, copied out of the file (the views above point here); the
  // file's other pages are never read. Empty for a whole stage.
  struct FreeBytes {
    std::align_val_t align{64};  // what the bytes were allocated with
    void operator()(std::byte* p) const;
  };
  std::vector<std::unique_ptr<std::byte[], FreeBytes>> owned;
};

// The tensors of the stage holding `layers` (model/schema.h), checked against the schema's shapes
// and handed to the backend. Throws Error("weights") / Error("safetensors") for a missing or
// mis-shaped tensor.
// With a split (a tensor-parallel member, model/tensor_split.h), only the member's slices are
// kept: rows of wq / wk / wv / gate / up / lm_head (and the q / k / v biases), columns of wo /
// down, per expert likewise; the embedding, norms, router and shared_expert_gate whole. Column
// slices must start and end on the format's blocks: Error("tensor-parallel") otherwise.
StageWeights load_stage_weights(const TensorLookup& lookup, const ModelConfig& c, LayerRange layers,
                                backend::Backend& be, const TensorSplit* split = nullptr);
StageWeights load_stage_weights(const SafetensorsSet& st, const ModelConfig& c, LayerRange layers,
                                backend::Backend& be);

}  // namespace meshlm::model
