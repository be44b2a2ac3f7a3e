// Helpers for the model sync tests: a tiny synthetic Qwen3 model written in-process, and
// remote::Worker instances running on threads.
#pragma once

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "model/config.h"
#include "model/safetensors_writer.h"
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
