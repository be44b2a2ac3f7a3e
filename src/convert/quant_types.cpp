#include "convert/quant_types.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"

namespace meshlm::convert {

namespace {

// llama.h's llama_ftype values for the file types meshlm writes.
constexpr uint32_t kFtypeAllF32 = 0, kFtypeF16 = 1, kFtypeQ4_0 = 2, kFtypeQ4_1 = 3, kFtypeQ8_0 = 7,
                   kFtypeQ5_0 = 8, kFtypeQ5_1 = 9, kFtypeQ4_K_M = 15, kFtypeQ5_K_M = 17, kFtypeQ6_K = 18, kFtypeBF16 = 32;

constexpr QuantType kTypes[] = {
    {"f32", "F32", OutputKind::Gguf, kFtypeAllF32, WeightType::F32, 0},
    {"f16", "F16", OutputKind::Gguf, kFtypeF16, WeightType::F16, 0},
    {"bf16", "BF16", OutputKind::Gguf, kFtypeBF16, WeightType::BF16, 0},
    {"q8_0", "Q8_0", OutputKind::Gguf, kFtypeQ8_0, WeightType::Q8_0, 0},
    {"q4_0", "Q4_0", OutputKind::Gguf, kFtypeQ4_0, WeightType::Q4_0, 0},
    {"q4_1", "Q4_1", OutputKind::Gguf, kFtypeQ4_1, WeightType::Q4_1, 0},
    {"q5_0", "Q5_0", OutputKind::Gguf, kFtypeQ5_0, WeightType::Q5_0, 0},
    {"q5_1", "Q5_1", OutputKind::Gguf, kFtypeQ5_1, WeightType::Q5_1, 0},
    {"q4_k_m", "Q4_K_M", OutputKind::Gguf, kFtypeQ4_K_M, WeightType::Q4_K, 0},
    {"q5_k_m", "Q5_K_M", OutputKind::Gguf, kFtypeQ5_K_M, WeightType::Q5_K, 0},
    {"q6_k", "Q6_K", OutputKind::Gguf, kFtypeQ6_K, WeightType::Q6_K, 0},
    {"mlx4", "MLX4", OutputKind::Mlx, 0, WeightType::F32, 4},
    {"mlx8", "MLX8", OutputKind::Mlx, 0, WeightType::F32, 8},
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The broad roles llama-quantize's rules look at (its tensor_category), by GGUF name.
enum class Category { Other, Output, TokenEmbd, AttnV, AttnK, AttnQ, AttnOutput, FfnDown, FfnUp, FfnGate };

Category category_of(std::string_view name) {
  auto has = [&](std::string_view part) { return name.find(part) != std::string_view::npos; };
  if (name == "output.weight") return Category::Output;
  if (name == "token_embd.weight") return Category::TokenEmbd;
  // attn_qkv / attn_kv_b count as attn_v in llama.cpp; meshlm's architectures have neither.
  if (has("attn_qkv.weight") || has("attn_kv_b.weight") || has("attn_v.weight")) return Category::AttnV;
  if (has("attn_k.weight")) return Category::AttnK;
  if (has("attn_q.weight")) return Category::AttnQ;
  if (has("attn_output.weight")) return Category::AttnOutput;
  if (has("ffn_up")) return Category::FfnUp;
  if (has("ffn_gate")) return Category::FfnGate;
  if (has("ffn_down")) return Category::FfnDown;
  return Category::Other;
}

// llama-quantize reads an expert tensor's layer from its name ("blk.<n>.").
int64_t expert_tensor_layer(std::string_view name) {
  const int64_t layer = gguf_layer_of(name);
  if (layer < 0) throw Error("quantize", "cannot tell the layer of expert tensor '" + std::string(name) + "'");
  return layer;
}

// ggml_n_dims: trailing ne[] of 1 (leading row-major dims) do not count; at least 1.
int n_dims(std::span<const int64_t> shape) {
  for (size_t j = 0; j < shape.size(); ++j)
    if (shape[j] > 1) return int(shape.size() - j);
  return 1;
}

// Which tensors llama-quantize may change at all (tensor_allows_quantization), for the
// tensor names meshlm's architectures have.
bool allows_quantization(const TensorChoiceInput& t) {
  if (n_dims(t.shape) < 2) return false;
  const std::string_view n = t.name;
  if (n.size() < 6 || n.substr(n.size() - 6) != "weight") return false;
  for (std::string_view no : {"_norm.weight", "ffn_gate_inp.weight", "position_embd", "token_types.weight",
                              "attn_rel_b.weight", "ssm_conv1d"})
    if (n.find(no) != std::string_view::npos) return false;
  return true;
}

bool use_more_bits(int64_t i_layer, int64_t n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

int64_t block_elems(WeightType t) { return formats::info(t).block_elems; }

}  // namespace

std::span<const QuantType> all_quant_types() { return kTypes; }

std::string quant_type_names() {
  std::string s;
  for (const QuantType& t : kTypes) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

const QuantType& parse_quant_type(std::string_view name) {
  const std::string want = lower(name);
  for (const QuantType& t : kTypes)
    if (want == t.name || want == lower(t.llama_name)) return t;
  throw Error("quantize", "unknown type '" + std::string(name) + "' (" + quant_type_names() + ")");
}

int64_t gguf_layer_of(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return -1;
  int64_t v = 0;
  size_t i = 4;
  if (i >= name.size() || !std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  for (; i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])); ++i) {
    v = v * 10 + (name[i] - '0');
    if (v > (int64_t(1) << 31)) return -1;
  }
  return i < name.size() && name[i] == '.' ? v : -1;
}

std::vector<size_t> llama_quantize_order(std::span<const std::string> names) {
  std::vector<size_t> order(names.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int64_t la = gguf_layer_of(names[a]), lb = gguf_layer_of(names[b]);
    if (la != lb) return la < lb;
    return names[a] < names[b];
  });
  return order;
}

std::vector<TensorChoice> choose_gguf_types(const QuantType& type, const ModelFacts& facts,
                                            std::span<const TensorChoiceInput> tensors) {
  if (type.kind != OutputKind::Gguf) throw Error("quantize", "'" + std::string(type.name) + "' is not a GGUF type");
  const WeightType def = type.default_type;
  const bool q4_k_m = type.llama_name == "Q4_K_M", q5_k_m = type.llama_name == "Q5_K_M";
  // llama-quantize: "70B" is a Llama with 80 layers and grouped-query attention, or a Qwen2 with 80.
  const bool is_70b = facts.n_layers == 80 &&
                      ((facts.arch == "llama" && facts.n_head != facts.n_head_kv) || facts.arch == "qwen2");
  bool tied = true;
  int64_t n_attn_v = 0;
  for (const TensorChoiceInput& t : tensors) {
    const Category c = category_of(t.name);
    if (c == Category::Output) tied = false;
    if (c == Category::AttnV) ++n_attn_v;
  }
  const int64_t n_ffn_down = facts.n_layers;
  int64_t i_attn_v = 0, i_ffn_down = 0;

  std::vector<TensorChoice> out;
  out.reserve(tensors.size());
  for (const TensorChoiceInput& t : tensors) {
    if (!allows_quantization(t)) {
      out.push_back({t.source_type, false});
      continue;
    }
    WeightType nt = def;
    const int64_t cols = t.shape.empty() ? 1 : t.shape.back();
    if (type.quantized()) {
      const Category c = category_of(t.name);
      if (c == Category::Output || (tied && c == Category::TokenEmbd)) {
        if (cols % block_elems(nt) != 0) nt = WeightType::Q8_0;
        else if (nt != WeightType::Q8_0) nt = WeightType::Q6_K;
      } else if (c == Category::AttnV) {
        if ((q4_k_m || q5_k_m) && use_more_bits(i_attn_v, n_attn_v)) nt = WeightType::Q6_K;
        if (is_70b && (nt == WeightType::Q3_K || nt == WeightType::Q4_K)) nt = WeightType::Q5_K;
        if (facts.n_expert == 8) nt = WeightType::Q8_0;
        ++i_attn_v;
      } else if (c == Category::AttnK) {
        if (facts.n_expert == 8) nt = WeightType::Q8_0;
      } else if (c == Category::AttnOutput) {
        if (facts.n_expert == 8 && q4_k_m) nt = WeightType::Q5_K;
      } else if (c == Category::FfnDown) {
        const int64_t layer = facts.n_expert > 1 ? expert_tensor_layer(t.name) : i_ffn_down;
        if ((q4_k_m || q5_k_m) && use_more_bits(layer, n_ffn_down)) nt = WeightType::Q6_K;
        ++i_ffn_down;
      }
      // Rows that are not whole blocks: llama-quantize's fallbacks.
      bool fallback = false;
      if (cols % block_elems(nt) != 0) {
        fallback = true;
        switch (nt) {
          case WeightType::Q4_K: nt = WeightType::Q5_0; break;
          case WeightType::Q5_K: nt = WeightType::Q5_1; break;
          case WeightType::Q6_K: nt = WeightType::Q8_0; break;
          case WeightType::Q2_K: case WeightType::Q3_K: nt = WeightType::Q4_0; break;
          default:
            throw Error("quantize", "tensor '" + t.name + "': rows of " + std::to_string(cols) +
                                        " elements are not whole " + std::string(formats::name(nt)) +
                                        " blocks and llama.cpp defines no fallback for it");
        }
        if (cols % block_elems(nt) != 0) nt = WeightType::F16;
      }
      out.push_back({nt, fallback});
      continue;
    }
    out.push_back({nt, false});
  }
  return out;
}

}  // namespace meshlm::convert
