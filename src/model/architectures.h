// The table of supported architectures: each model family is a row of traits (data), looked up
// by config.json's model_type. Adding a family that fits the decoder template is one row here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace meshlm::model {

// How a family's MLPs are mixtures of experts, and how its config.json and tensors name them.
enum class Moe : uint8_t {
  None,
  Qwen,     // num_experts, moe_intermediate_size, norm_topk_prob, decoder_sparse_step, mlp_only_layers;
            // "mlp.gate", "mlp.experts.<e>.{gate,up,down}_proj" (+ qwen2_moe's shared expert)
  Mixtral,  // num_local_experts, experts of intermediate_size, top-k renormalised, every layer;
            // "block_sparse_moe.gate", "block_sparse_moe.experts.<e>.{w1,w3,w2}"
};

struct ArchTraits {
  const char* model_type;       // config.json "model_type"
  const char* hf_class;         // config.json "architectures"[0]
  bool qkv_bias;                // q/k/v projections carry biases
  bool qk_norm;                 // per-head RMSNorm of q and k before RoPE
  bool head_dim_from_config;    // config.json has "head_dim" (else hidden / heads)
  Moe moe;                      // MLPs are mixtures of experts, and in which dialect
  double default_rope_theta;
  float default_rms_eps;
  // The family's usual vocabulary, context and special ids (what `meshlm synth` writes).
  int64_t vocab;
  int64_t max_position;
  int64_t bos_id;
  int64_t eos_id;
  // llama.cpp's name for the family (GGUF general.architecture), and whether its converter
  // permutes the q/k rows (llama.cpp's "llama" graph rotates interleaved pairs). Several
  // families share a name: dense Mistral and Mixtral are "llama" there.
  const char* gguf_arch;
  bool gguf_permute_qk;
};

// nullptr when the model_type is not supported.
const ArchTraits* find_arch(const std::string& model_type);
const std::vector<ArchTraits>& all_archs();
// The family a GGUF file of llama.cpp architecture `gguf_arch` holds: the first row of that name
// with (has_experts) or without experts ("llama" reads as llama, or mixtral with experts);
// nullptr when none.
const ArchTraits* find_gguf_arch(const std::string& gguf_arch, bool has_experts);

}  // namespace meshlm::model
