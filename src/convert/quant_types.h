// The output types of `meshlm quantize` and llama-quantize's per-tensor type choice for them.
//
// A GGUF file type (llama.cpp's "ftype": Q4_K_M, ...) is not one tensor type: llama-quantize
// gives each tensor a type from its role and layer (src/llama-quant.cpp). choose_gguf_types
// makes the same choice for the file types meshlm writes, so a file quantized here has the
// tensor types llama-quantize would give it:
//   * only tensors of two or more dims whose name ends in "weight" and is not a norm are
//     quantized; the rest keep their source type (1-D tensors stay F32)
//   * output.weight (and token_embd.weight when the head is tied to it) -> Q6_K unless the file
//     type is Q8_0; Q8_0 when its rows are not whole 256-element blocks
//   * Q4_K_M / Q5_K_M: attn_v and ffn_down of the "more bits" layers (the first 1/8, the last
//     1/8, and every third in between) -> Q6_K; Llama/Qwen2 70B (80 layers): Q4_K attn_v -> Q5_K
//   * mixture-of-experts models: ffn_down's layer is read from the tensor name (a layer may hold
//     several: the experts', the shared expert's); with exactly 8 experts (Mixtral's shape) attn_v
//     and attn_k -> Q8_0, and Q4_K_M's attn_output -> Q5_K
//   * rows that are not whole blocks of the chosen type fall back (Q4_K -> Q5_0, Q5_K -> Q5_1,
//     Q6_K -> Q8_0; F16 when not whole 32-element blocks either)
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/weight_format.h"

namespace meshlm::convert {

enum class OutputKind { Gguf, Mlx };

struct QuantType {
  std::string_view name;        // as `--type` spells it: "q4_k_m"
  std::string_view llama_name;  // as llama-quantize spells it: "Q4_K_M"
  OutputKind kind;
  uint32_t llama_ftype;         // general.file_type (GGUF kinds)
  WeightType default_type;      // the tensor type most tensors get (GGUF kinds)
  int mlx_bits;                 // bits per weight (MLX kinds)
  bool quantized() const { return kind == OutputKind::Mlx || !formats::info(default_type).plain(); }
};

std::span<const QuantType> all_quant_types();
// Case-insensitive; accepts llama.cpp's spellings ("Q4_K_M", "F16", "BF16"). Throws
// Error("quantize", ...) naming the known types.
const QuantType& parse_quant_type(std::string_view name);
std::string quant_type_names();  // "f32, f16, ..." for messages

// What the choice depends on besides the tensors.
struct ModelFacts {
  std::string arch;        // GGUF architecture ("qwen3", "llama", ...)
  int64_t n_layers = 0;
  int64_t n_head = 0, n_head_kv = 0;
  int64_t n_expert = 0;    // experts per MoE layer (0: dense)
};

struct TensorChoiceInput {
  std::string name;             // GGUF name
  std::vector<int64_t> shape;   // row-major: the last dim is the row
  WeightType source_type;
};

struct TensorChoice {
  WeightType type;
  bool fallback = false;  // the rows did not fit the type the rules chose
};

// The type of every tensor, given in llama-quantize's processing order (see
// llama_quantize_order): counters over attn_v / ffn_down advance in that order. Throws
// Error("quantize", ...) when a tensor has no possible type (rows not whole 32-element blocks
// for Q4_0 / Q8_0, as llama-quantize).
std::vector<TensorChoice> choose_gguf_types(const QuantType& type, const ModelFacts& facts,
                                            std::span<const TensorChoiceInput> tensors);

// llama-quantize's tensor order: tensors of no layer first, then blk.0.*, blk.1.*, ...; by
// name (bytewise) within each group. Returns indices into `names`.
std::vector<size_t> llama_quantize_order(std::span<const std::string> names);

// The block layer of "blk.N.…", or -1.
int64_t gguf_layer_of(std::string_view name);

}  // namespace meshlm::convert
