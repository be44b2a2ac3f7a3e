#include "model/architectures.h"

namespace meshlm::model {

// Every family here is the same pre-norm decoder (RMSNorm, rotary attention with GQA, SiLU-gated
// MLP or a mixture of such MLPs); rows differ only in traits.
const std::vector<ArchTraits>& all_archs() {
  static const std::vector<ArchTraits> archs = {
      // Qwen3: per-head q_norm / k_norm, explicit head_dim, no biases.
      {"qwen3", "Qwen3ForCausalLM", false, true, true, Moe::None, 1000000.0, 1e-6f, 151936, 40960, 151643, 151645, "qwen3", false},
      // Qwen2 / Qwen2.5: q/k/v biases, head_dim = hidden / heads.
      {"qwen2", "Qwen2ForCausalLM", true, false, true, Moe::None, 1000000.0, 1e-6f, 151936, 32768, 151643, 151645, "qwen2", false},
      // Llama 2 / 3 / 3.1 / 3.2 (rope_scaling "llama3" handled in config.cpp).
      {"llama", "LlamaForCausalLM", false, false, true, Moe::None, 10000.0, 1e-5f, 128256, 131072, 128000, 128001, "llama", true},
      // Mistral 7B v0.x and later dense Mistrals.
      {"mistral", "MistralForCausalLM", false, false, true, Moe::None, 10000.0, 1e-5f, 32768, 32768, 1, 2, "llama", true},
      // Qwen3-MoE (Qwen3-30B-A3B, 235B-A22B): Qwen3's attention, mixture-of-experts MLPs.
      {"qwen3_moe", "Qwen3MoeForCausalLM", false, true, true, Moe::Qwen, 1000000.0, 1e-6f, 151936, 40960, 151643, 151645, "qwen3moe", false},
      // Qwen2-MoE / Qwen1.5-MoE (57B-A14B, A2.7B): Qwen2's attention (q/k/v biases), routed
      // experts plus a shared expert behind a sigmoid gate.
      {"qwen2_moe", "Qwen2MoeForCausalLM", true, false, false, Moe::Qwen, 1000000.0, 1e-6f, 151936, 32768, 151643, 151645, "qwen2moe", false},
      // Mixtral 8x7B / 8x22B: Mistral's attention, every MLP a mixture of 8 experts, top-2.
      {"mixtral", "MixtralForCausalLM", false, false, true, Moe::Mixtral, 1000000.0, 1e-5f, 32000, 32768, 1, 2, "llama", true},
  };
  return archs;
}

const ArchTraits* find_gguf_arch(const std::string& gguf_arch, bool has_experts) {
  for (const auto& a : all_archs())
    if (gguf_arch == a.gguf_arch && has_experts == (a.moe != Moe::None)) return &a;
  return nullptr;
}

const ArchTraits* find_arch(const std::string& model_type) {
  for (const auto& a : all_archs())
    if (model_type == a.model_type) return &a;
  return nullptr;
}

}  // namespace meshlm::model
