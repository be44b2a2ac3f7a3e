// Helpers for the model sync tests: a tiny synthetic Qwen3 model written in-process, and
// remote::Worker instances running on threads.
#pragma once

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "formats/gguf_writer.h"
#include "formats/quants.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/safetensors_writer.h"
#include "model/schema.h"
#include "remote/worker.h"

namespace meshlm::remote::test {

namespace fs = std::filesystem;

// A Qwen3 model with untied embeddings (so the last stage needs norm + lm_head) and f32
// weights from a fixed generator. `scale` grows every matrix (for the benchmark).
inline void write_tiny_model(const fs::path& dir, int64_t hidden = 64, int64_t layers = 4,
                             int64_t inter = 128, int64_t vocab = 256) {
  fs::create_directories(dir);
  const int64_t heads = 4, kv_heads = 2, head_dim = hidden / heads;
  nlohmann::json c;
  c["architectures"] = {"Qwen3ForCausalLM"};
  c["model_type"] = "qwen3";
  c["hidden_size"] = hidden;
  c["num_hidden_layers"] = layers;
  c["num_attention_heads"] = heads;
  c["num_key_value_heads"] = kv_heads;
  c["head_dim"] = head_dim;
  c["intermediate_size"] = inter;
  c["vocab_size"] = vocab;
  c["max_position_embeddings"] = 1024;
  c["rms_norm_eps"] = 1e-6;
  c["rope_theta"] = 1000000;
  c["tie_word_embeddings"] = false;
  c["bos_token_id"] = 1;
  c["eos_token_id"] = 2;
  std::ofstream(dir / "config.json") << c.dump(2) << "\n";

  std::vector<model::TensorSpec> specs;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    specs.push_back({name, WeightType::F32, std::move(shape)});
  };
  add("model.embed_tokens.weight", {vocab, hidden});
  for (int64_t i = 0; i < layers; ++i) {
    std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {hidden});
    add(p + "post_attention_layernorm.weight", {hidden});
    add(p + "self_attn.q_proj.weight", {heads * head_dim, hidden});
    add(p + "self_attn.k_proj.weight", {kv_heads * head_dim, hidden});
    add(p + "self_attn.v_proj.weight", {kv_heads * head_dim, hidden});
    add(p + "self_attn.o_proj.weight", {hidden, heads * head_dim});
    add(p + "self_attn.q_norm.weight", {head_dim});
    add(p + "self_attn.k_norm.weight", {head_dim});
    add(p + "mlp.gate_proj.weight", {inter, hidden});
    add(p + "mlp.up_proj.weight", {inter, hidden});
    add(p + "mlp.down_proj.weight", {hidden, inter});
  }
  add("model.norm.weight", {hidden});
  add("lm_head.weight", {vocab, hidden});
  model::SafetensorsWriter w((dir / "model.safetensors").string(), specs);
  uint32_t state = 12345;
  for (const auto& s : specs) {
    const bool norm = s.shape.size() == 1;
    std::vector<float> v(static_cast<size_t>(s.elements()));
    for (auto& x : v) {
      state = state * 1664525u + 1013904223u;
      float r = static_cast<float>(state >> 8) / 16777216.0f - 0.5f;  // [-0.5, 0.5)
      x = norm ? 1.0f + 0.2f * r : 0.2f * r;
    }
    w.append(s.name, std::as_bytes(std::span<const float>(v)));
  }
  w.finish();
}

// The Hugging Face folder `hf_dir` (write_tiny_model) as a Q4_K_M-like GGUF file: Q4_K
// matrices, Q6_K for v/down of every other layer and the head, Q8_0 embedding, F32 norms, and
// a rope_freqs.weight (a tensor no schema row names, as llama3-scaled GGUFs have) with factors
// 1..2. The matrices' rows must be whole 256-element blocks (hidden and intermediate multiples
// of 256).
inline void write_tiny_gguf(const fs::path& hf_dir, const fs::path& out) {
  const model::ModelConfig c = model::ModelConfig::from_dir(hf_dir.string());
  auto set = model::SafetensorsSet::open_dir(hf_dir.string());
  formats::GgufWriter w(out.string());
  using formats::GgufValue;
  w.set("general.architecture", GgufValue::from_string("qwen3"));
  w.set("general.name", GgufValue::from_string("meshlm sync test"));
  w.set("qwen3.block_count", GgufValue::from_u32(uint32_t(c.n_layers)));
  w.set("qwen3.context_length", GgufValue::from_u32(uint32_t(c.max_position)));
  w.set("qwen3.embedding_length", GgufValue::from_u32(uint32_t(c.hidden)));
  w.set("qwen3.feed_forward_length", GgufValue::from_u32(uint32_t(c.intermediate)));
  w.set("qwen3.attention.head_count", GgufValue::from_u32(uint32_t(c.n_heads)));
  w.set("qwen3.attention.head_count_kv", GgufValue::from_u32(uint32_t(c.n_kv_heads)));
  w.set("qwen3.attention.key_length", GgufValue::from_u32(uint32_t(c.head_dim)));
  w.set("qwen3.attention.value_length", GgufValue::from_u32(uint32_t(c.head_dim)));
  w.set("qwen3.attention.layer_norm_rms_epsilon", GgufValue::from_f32(float(c.rms_eps)));
  w.set("qwen3.rope.freq_base", GgufValue::from_f32(float(c.rope_theta)));
  struct Out {
    std::string name;
    WeightType type;
    std::vector<int64_t> shape;
    std::vector<float> values;
  };
  std::vector<Out> outs;
  for (const model::TensorDesc& d : model::model_tensors(c)) {
    const model::TensorInfo& t = set->info(d.name);
    std::vector<float> v(t.nbytes / 4);
    std::memcpy(v.data(), set->data(t), t.nbytes);
    WeightType type = WeightType::F32;
    if (d.role == model::TensorRole::Embed) type = WeightType::Q8_0;
    else if (d.role == model::TensorRole::LmHead) type = WeightType::Q6_K;
    else if (d.kind == model::TensorKind::Matrix)
      type = (d.role == model::TensorRole::Wv || d.role == model::TensorRole::WDown) && d.layer % 2 == 0
                 ? WeightType::Q6_K
                 : WeightType::Q4_K;
    outs.push_back({d.gguf_name, type, d.shape, std::move(v)});
  }
  std::vector<float> freqs(size_t(c.head_dim / 2));
  for (size_t i = 0; i < freqs.size(); ++i) freqs[i] = 1.0f + float(i) / float(freqs.size());
  outs.push_back({"rope_freqs.weight", WeightType::F32, {int64_t(freqs.size())}, freqs});
  for (const Out& o : outs) w.add_tensor(o.name, o.type, o.shape);
  for (const Out& o : outs) {
    const int64_t row = o.shape.back();
    const int64_t rows = int64_t(o.values.size()) / row;
    const size_t rb = formats::row_bytes(o.type, row);
    std::vector<uint8_t> bytes(rb * size_t(rows));
    for (int64_t r = 0; r < rows; ++r) {
      if (o.type == WeightType::F32)
        std::memcpy(bytes.data() + size_t(r) * rb, o.values.data() + r * row, rb);
      else
        formats::quantize_row(o.type, o.values.data() + r * row, row, bytes.data() + size_t(r) * rb);
    }
    w.append(o.name, bytes);
  }
  w.finish();
}

// A remote::Worker serving on a thread (127.0.0.1, a free port).
class ThreadWorker {
 public:
  ThreadWorker(const std::string& secret, const std::string& cache_dir,
               const std::string& model_dir = "") {
    WorkerOptions o;
    o.listen = "127.0.0.1:0";
    o.secret = secret;
    o.cache_dir = cache_dir;
    o.model_dir = model_dir;
    o.threads = 1;
    worker_ = std::make_unique<Worker>(o);
    thread_ = std::thread([this] { worker_->run(); });
  }
  ~ThreadWorker() {
    worker_->stop();
    thread_.join();
  }
  std::string address() const { return worker_->address(); }

 private:
  std::unique_ptr<Worker> worker_;
  std::thread thread_;
};

}  // namespace meshlm::remote::test
