// llama-quantize's per-tensor type choice (convert/quant_types.h) on synthetic tensor lists.
#include <gtest/gtest.h>

#include <map>

#include "convert/quant_types.h"
#include "core/error.h"

namespace meshlm::convert {
namespace {

// The tensors of a dense decoder as GGUF names them, in llama-quantize's order.
std::vector<TensorChoiceInput> decoder(int64_t layers, bool tied, int64_t hidden = 256, int64_t inter = 768,
                                       int64_t kv = 128, int64_t vocab = 1000) {
  std::vector<TensorChoiceInput> t;
  if (!tied) t.push_back({"output.weight", {vocab, hidden}, WeightType::F32});
  t.push_back({"output_norm.weight", {hidden}, WeightType::F32});
  t.push_back({"token_embd.weight", {vocab, hidden}, WeightType::F32});
  for (int64_t i = 0; i < layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    for (auto& [n, s] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
             {"attn_k.weight", {kv, hidden}},        {"attn_norm.weight", {hidden}},
             {"attn_output.weight", {hidden, hidden}}, {"attn_q.weight", {hidden, hidden}},
             {"attn_v.weight", {kv, hidden}},        {"ffn_down.weight", {hidden, inter}},
             {"ffn_gate.weight", {inter, hidden}},   {"ffn_norm.weight", {hidden}},
             {"ffn_up.weight", {inter, hidden}}})
      t.push_back({b + n, s, WeightType::F32});
  }
  return t;
}

std::map<std::string, WeightType> choose(std::string_view type, const std::vector<TensorChoiceInput>& t,
                                         int64_t layers, std::string arch = "qwen3", int64_t heads = 4,
                                         int64_t kv_heads = 2) {
  auto c = choose_gguf_types(parse_quant_type(type), {arch, layers, heads, kv_heads}, t);
  std::map<std::string, WeightType> out;
  for (size_t i = 0; i < t.size(); ++i) out[t[i].name] = c[i].type;
  return out;
}

TEST(QuantTypes, ParsesOurAndLlamaCppSpellings) {
  EXPECT_EQ(parse_quant_type("q4_k_m").llama_ftype, 15u);
  EXPECT_EQ(parse_quant_type("Q4_K_M").llama_ftype, 15u);
  EXPECT_EQ(parse_quant_type("Q5_K_M").llama_ftype, 17u);
  EXPECT_EQ(parse_quant_type("q6_k").llama_ftype, 18u);
  EXPECT_EQ(parse_quant_type("Q8_0").llama_ftype, 7u);
  EXPECT_EQ(parse_quant_type("q4_0").llama_ftype, 2u);
  EXPECT_EQ(parse_quant_type("Q4_1").llama_ftype, 3u);
  EXPECT_EQ(parse_quant_type("q5_0").llama_ftype, 8u);
  EXPECT_EQ(parse_quant_type("Q5_1").llama_ftype, 9u);
  EXPECT_EQ(parse_quant_type("q5_1").default_type, WeightType::Q5_1);
  EXPECT_EQ(parse_quant_type("F16").llama_ftype, 1u);
  EXPECT_EQ(parse_quant_type("bf16").llama_ftype, 32u);
  EXPECT_EQ(parse_quant_type("f32").llama_ftype, 0u);
  EXPECT_EQ(parse_quant_type("MLX4").mlx_bits, 4);
  EXPECT_EQ(parse_quant_type("mlx8").kind, OutputKind::Mlx);
  try {
    parse_quant_type("q3_k_s");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown type 'q3_k_s'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("q4_k_m"), std::string::npos) << e.what();
  }
}

TEST(QuantTypes, LlamaQuantizeOrder) {
  std::vector<std::string> names = {"token_embd.weight", "blk.10.attn_q.weight", "blk.2.ffn_up.weight",
                                    "output_norm.weight", "blk.2.attn_k.weight", "rope_freqs.weight",
                                    "output.weight"};
  std::vector<std::string> sorted;
  for (size_t i : llama_quantize_order(names)) sorted.push_back(names[i]);
  EXPECT_EQ(sorted, (std::vector<std::string>{"output.weight", "output_norm.weight", "rope_freqs.weight",
                                              "token_embd.weight", "blk.2.attn_k.weight", "blk.2.ffn_up.weight",
                                              "blk.10.attn_q.weight"}));
  EXPECT_EQ(gguf_layer_of("blk.12.attn_q.weight"), 12);
  EXPECT_EQ(gguf_layer_of("blk.x.attn_q.weight"), -1);
  EXPECT_EQ(gguf_layer_of("token_embd.weight"), -1);
}

// The golden model's mix: 4 layers, tied.
TEST(QuantTypes, Q4KMOfTheTinyModel) {
  auto m = choose("q4_k_m", decoder(4, true), 4);
  EXPECT_EQ(m["token_embd.weight"], WeightType::Q6_K);  // tied: the output's rule
  EXPECT_EQ(m["output_norm.weight"], WeightType::F32);
  for (int i = 0; i < 4; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    // use_more_bits(i, 4): i >= 3 or (i - 0) % 3 == 2
    const WeightType more = (i == 2 || i == 3) ? WeightType::Q6_K : WeightType::Q4_K;
    EXPECT_EQ(m[b + "attn_v.weight"], more) << i;
    EXPECT_EQ(m[b + "ffn_down.weight"], more) << i;
    EXPECT_EQ(m[b + "attn_q.weight"], WeightType::Q4_K);
    EXPECT_EQ(m[b + "attn_k.weight"], WeightType::Q4_K);
    EXPECT_EQ(m[b + "attn_output.weight"], WeightType::Q4_K);
    EXPECT_EQ(m[b + "ffn_gate.weight"], WeightType::Q4_K);
    EXPECT_EQ(m[b + "ffn_up.weight"], WeightType::Q4_K);
    EXPECT_EQ(m[b + "attn_norm.weight"], WeightType::F32);
  }
}

// 28 layers (Qwen3-0.6B's count): the "more bits" layers are 0-2, 5, 8, 11, 14, 17, 20, 23, 24-27.
TEST(QuantTypes, MoreBitsLayersOf28) {
  auto m = choose("q5_k_m", decoder(28, false), 28);
  std::vector<int> more;
  for (int i = 0; i < 28; ++i) {
    const WeightType v = m["blk." + std::to_string(i) + ".attn_v.weight"];
    EXPECT_EQ(v, m["blk." + std::to_string(i) + ".ffn_down.weight"]) << i;
    if (v == WeightType::Q6_K) more.push_back(i);
    else EXPECT_EQ(v, WeightType::Q5_K) << i;
  }
  EXPECT_EQ(more, (std::vector<int>{0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27}));
  EXPECT_EQ(m["output.weight"], WeightType::Q6_K);
  EXPECT_EQ(m["token_embd.weight"], WeightType::Q5_K);  // untied: the default type
}

TEST(QuantTypes, OtherFileTypes) {
  auto q8 = choose("q8_0", decoder(4, false), 4);
  EXPECT_EQ(q8["output.weight"], WeightType::Q8_0);
  EXPECT_EQ(q8["token_embd.weight"], WeightType::Q8_0);
  EXPECT_EQ(q8["blk.3.attn_v.weight"], WeightType::Q8_0);
  EXPECT_EQ(q8["blk.3.attn_norm.weight"], WeightType::F32);
  auto q40 = choose("q4_0", decoder(4, true), 4);
  EXPECT_EQ(q40["token_embd.weight"], WeightType::Q6_K);  // llama-quantize's output rule
  EXPECT_EQ(q40["blk.3.ffn_down.weight"], WeightType::Q4_0);
  // The other 32-element types: the output (tied embedding) Q6_K, every other matrix the type.
  for (auto [name, want] : {std::pair{"q4_1", WeightType::Q4_1}, std::pair{"q5_0", WeightType::Q5_0},
                            std::pair{"q5_1", WeightType::Q5_1}}) {
    for (auto& [n, t] : choose(name, decoder(4, true), 4)) {
      const WeightType expect = n.find("norm") != std::string::npos ? WeightType::F32
                                : n == "token_embd.weight"          ? WeightType::Q6_K
                                                                    : want;
      EXPECT_EQ(t, expect) << name << " " << n;
    }
    auto untied = choose(name, decoder(4, false), 4);
    EXPECT_EQ(untied["output.weight"], WeightType::Q6_K) << name;
    EXPECT_EQ(untied["token_embd.weight"], want) << name;
    // Output rows that are not whole Q6_K blocks: Q8_0, as llama-quantize.
    EXPECT_EQ(choose(name, decoder(4, true, 96, 288, 64), 4)["token_embd.weight"], WeightType::Q8_0) << name;
  }
  auto q6 = choose("q6_k", decoder(4, true), 4);
  for (auto& [n, t] : q6) {
    EXPECT_EQ(t, n.find("norm") != std::string::npos ? WeightType::F32 : WeightType::Q6_K) << n;
  }
  auto f16 = choose("f16", decoder(4, false), 4);
  for (auto& [n, t] : f16) {
    EXPECT_EQ(t, n.find("norm") != std::string::npos ? WeightType::F32 : WeightType::F16) << n;
  }
}

// Rows that are not whole 256-element blocks: llama-quantize's fallbacks.
TEST(QuantTypes, Fallbacks) {
  // hidden 96: Q4_K -> Q5_0, Q6_K -> Q8_0 (96 = 3 x 32); output rows not whole Q4_K blocks -> Q8_0
  auto t = decoder(4, true, 96, 288, 64);
  auto c = choose_gguf_types(parse_quant_type("q4_k_m"), {"qwen3", 4, 4, 2}, t);
  std::map<std::string, TensorChoice> m;
  for (size_t i = 0; i < t.size(); ++i) m[t[i].name] = c[i];
  EXPECT_EQ(m["token_embd.weight"].type, WeightType::Q8_0);
  EXPECT_EQ(m["blk.0.attn_q.weight"].type, WeightType::Q5_0);
  EXPECT_TRUE(m["blk.0.attn_q.weight"].fallback);
  EXPECT_EQ(m["blk.3.attn_v.weight"].type, WeightType::Q8_0);  // Q6_K -> Q8_0
  EXPECT_EQ(m["blk.0.ffn_down.weight"].type, WeightType::Q5_0);  // 288 = 9 x 32
  // Q5_K -> Q5_1; rows of 48 (not whole 32-blocks either) -> F16
  auto t5 = decoder(4, false, 256, 48, 128);
  auto c5 = choose_gguf_types(parse_quant_type("q5_k_m"), {"qwen3", 4, 4, 2}, t5);
  auto t96 = decoder(4, false, 96, 96, 96);
  auto c96 = choose_gguf_types(parse_quant_type("q5_k_m"), {"qwen3", 4, 4, 2}, t96);
  for (size_t i = 0; i < t5.size(); ++i) {
    if (t5[i].name == "blk.1.ffn_down.weight") {
      EXPECT_EQ(c5[i].type, WeightType::F16);
      EXPECT_EQ(c96[i].type, WeightType::Q5_1);
    }
  }
  // Q8_0 has no fallback in llama.cpp: rows of 48 are an error (so is an output of 48).
  EXPECT_THROW(choose_gguf_types(parse_quant_type("q8_0"), {"qwen3", 4, 4, 2}, t5), Error);
  EXPECT_THROW(choose_gguf_types(parse_quant_type("q4_k_m"), {"qwen3", 4, 4, 2}, decoder(4, false, 48, 96, 48)),
               Error);
}

TEST(QuantTypes, Llama70BAttnV) {
  auto m = choose("q4_k_m", decoder(80, false), 80, "llama", 64, 8);
  EXPECT_EQ(m["blk.9.attn_v.weight"], WeightType::Q6_K);    // 9 < 80 / 8
  EXPECT_EQ(m["blk.10.attn_v.weight"], WeightType::Q5_K);   // Q4_K bumped for 70B
  EXPECT_EQ(m["blk.12.attn_v.weight"], WeightType::Q6_K);   // (12 - 10) % 3 == 2
  EXPECT_EQ(m["blk.13.attn_v.weight"], WeightType::Q5_K);   // Q4_K bumped for 70B
  EXPECT_EQ(m["blk.13.ffn_down.weight"], WeightType::Q4_K);
  auto not70 = choose("q4_k_m", decoder(80, false), 80, "llama", 64, 64);  // no GQA: "65B"
  EXPECT_EQ(not70["blk.13.attn_v.weight"], WeightType::Q4_K);
}

}  // namespace
}  // namespace meshlm::convert
