// ModelConfig: what the engine needs from a Hugging Face config.json, architecture differences
// expressed as data (see architectures.cpp for the table of supported model_types).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/weight_format.h"

namespace meshlm::model {

enum class RopeScaling { None, Llama3, Linear };

struct ModelConfig {
  std::string model_type;     // "qwen3", "qwen2", "llama", "mistral", "qwen3_moe", "qwen2_moe"
  std::string architecture;   // "Qwen3ForCausalLM", ...
  int64_t hidden = 0;         // hidden_size
  int64_t n_layers = 0;       // num_hidden_layers
  int64_t n_heads = 0;        // num_attention_heads
  int64_t n_kv_heads = 0;     // num_key_value_heads (GQA); == n_heads when absent
  int64_t head_dim = 0;       // head_dim, or hidden / n_heads
  int64_t intermediate = 0;   // intermediate_size
  int64_t vocab = 0;          // vocab_size
  int64_t max_position = 0;   // max_position_embeddings
  float rms_eps = 1e-6f;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling = RopeScaling::None;
  double rope_factor = 1.0, rope_low_freq_factor = 1.0, rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position = 8192;
  bool tie_embeddings = false;
  // Architecture traits (from the table, not from config.json):
  bool qkv_bias = false;  // q/k/v projections have biases (Qwen2)
  bool qk_norm = false;   // per-head RMSNorm on q and k before RoPE (Qwen3)
  std::vector<int64_t> eos_ids;
  int64_t bos_id = -1;
  // GGUF files of the llama family (llama.cpp's converter permutes their q/k rows so that RoPE
  // rotates adjacent pairs (2i, 2i+1) instead of (i, i + head_dim/2)); same result, other layout.
  bool rope_interleaved = false;
  // GGUF rope_freqs.weight (llama3-style scaling stored as per-frequency divisors): when not
  // empty, inv_freq[i] = theta^(-2i/d) / rope_freq_factors[i] and rope_scaling is ignored.
  std::vector<float> rope_freq_factors;
  // Mixture of experts (qwen3_moe): 0 experts for a dense model. A MoE layer's MLP is a router
  // (softmax over every expert, the top n_experts_used kept, renormalised when norm_topk_prob)
  // and n_experts SiLU-gated MLPs of moe_intermediate; the layers listed in mlp_only_layers, and
  // those not on the decoder_sparse_step grid, keep the dense MLP of `intermediate`.
  int64_t n_experts = 0;         // num_experts
  int64_t n_experts_used = 0;    // num_experts_per_tok
  int64_t moe_intermediate = 0;  // moe_intermediate_size
  bool norm_topk_prob = false;
  // qwen2_moe: a shared expert (SiLU-gated MLP of this size) every token passes through, its
  // output scaled by sigmoid(h . shared_expert_gate) and added to the routed experts'. 0: none.
  int64_t shared_expert_intermediate = 0;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;
  // Sliding-window attention: in the layers from sliding_window_from on, a token attends to the
  // last sliding_window positions (itself included) only. 0: full attention everywhere.
  // Mistral / Mixtral: config.json's sliding_window, every layer; the Qwen families: with
  // use_sliding_window, the layers from max_window_layers on.
  int64_t sliding_window = 0;
  int64_t sliding_window_from = 0;

  // Parses config.json. Throws Error("config", ...) for missing keys or an unknown architecture
  // (naming the supported ones).
  static ModelConfig from_json(const nlohmann::json& j);
  // A model folder's config.json, or a GGUF model's metadata (model/model_files.h).
  static ModelConfig from_dir(const std::string& dir);

  // Throws Error("config", ...) for sizes that are not positive, inconsistent or implausibly
  // large (a hostile file must not make the engine allocate terabytes before reading a weight).
  void validate() const;

  // RoPE inverse frequencies (head_dim/2), with the llama3 / linear scaling applied.
  std::vector<float> rope_inv_freq() const;
  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  // KV bytes of one position over every layer (the whole model, all stages together) in a KV
  // cache type (model/kv_cache.h: F32, BF16, F16, Q8_0; rows padded as the cache pads them).
  int64_t kv_bytes_per_token(WeightType kv_type = WeightType::F32) const;
  bool is_moe() const { return n_experts > 0; }
  // Layer `layer`'s MLP is the mixture of experts (else the dense MLP).
  bool moe_layer(int64_t layer) const;
  // How many positions back a token of this layer sees (itself included); 0: all of them.
  int64_t window(int64_t layer) const {
    return sliding_window > 0 && layer >= sliding_window_from ? sliding_window : 0;
  }
};

// The model_types meshlm supports, for error messages ("qwen3, qwen2, llama, mistral").
std::string supported_architectures();

}  // namespace meshlm::model
