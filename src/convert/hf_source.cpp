// A Hugging Face folder seen as the GGUF file llama.cpp's converter (convert_hf_to_gguf.py)
// would write from it, for meshlm's architectures. The rules, as the converter applies them:
//   names     model.embed_tokens -> token_embd, model.layers.N.X -> blk.N.Y, model.norm ->
//             output_norm, lm_head -> output (a tied head is not written)
//   tensors   in the folder's order; rope_freqs.weight first when there is one
//   llama     (and mistral, which the converter writes as arch "llama"): q_proj / k_proj rows
//             permuted per head, (n_head, 2, d/2) -> (n_head, d/2, 2), so that ggml's adjacent-
//             pair RoPE equals HF's rotate_half; rope_scaling llama3 -> rope_freqs.weight
//   1-D       tensors (norms, biases) are F32
//   metadata  general.*, the architecture's hyper-parameters, file type, tokenizer (gpt2 BPE:
//             tokens, token types, merges, special ids, add_bos/add_eos, chat template)
// make_synth_model.py --gguf (shared/tools) writes the same for its synthetic models.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "convert/source_model.h"
#include "core/error.h"
#include "core/json_file.h"
#include "model/architectures.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/schema.h"

namespace meshlm::convert {

namespace {

namespace fs = std::filesystem;
using formats::GgufType;
using formats::GgufValue;
using nlohmann::json;
using model::TensorRole;

[[noreturn]] void fail(const std::string& msg) { throw Error("quantize", msg); }

// The converter's token types (gguf-py TokenType).
constexpr int64_t kTokenNormal = 1, kTokenControl = 3, kTokenUserDefined = 4, kTokenUnused = 5;

// The pre-tokenizer regexes llama.cpp knows by name (it identifies them by hashing the
// tokenizer's output; the regex is what that hash stands for).
struct PreTokenizer {
  const char* regex;
  const char* name;
};
constexpr PreTokenizer kPreTokenizers[] = {
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "qwen2"},
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "llama-bpe"},
};

// ---- tokenizer -> GGUF vocabulary -----------------------------------------------------------

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool looks_special(const std::string& t) {
  auto starts = [&](std::string_view p) { return t.size() >= p.size() && t.compare(0, p.size(), p) == 0; };
  auto ends = [&](std::string_view s) { return t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0; };
  return (starts("<|") && ends("|>")) || (starts("<\uff5c") && ends("\uff5c>")) || t == "<pad>" || t == "<mask>" ||
         t == "<2mass>" || t == "[@BOS@]" || (starts("<unused") && ends(">"));
}

// A merge given as a pair ["a b", "c"]: its parts joined by a space, spaces inside a part
// written as U+0120 (the converter's rule for the newer tokenizer.json format).
std::string merge_string(const json& m) {
  if (m.is_string()) return m.get<std::string>();
  if (!m.is_array()) fail("tokenizer.json: a merge is neither a string nor a pair");
  std::string out;
  for (size_t i = 0; i < m.size(); ++i) {
    if (i) out += ' ';
    for (char c : m[i].get<std::string>()) {
      if (c == ' ') out += "\xC4\xA0";
      else out += c;
    }
  }
  return out;
}

struct Vocab {
  std::string pre;
  std::vector<std::string> tokens;
  std::vector<int64_t> types;
  std::vector<std::string> merges;
  std::vector<std::pair<std::string, int64_t>> special;  // in the order the converter writes them
  std::optional<bool> add_bos, add_eos;
  std::optional<std::string> chat_template;
};

Vocab read_vocab(const fs::path& dir, const json& config, int64_t vocab_size) {
  const fs::path tj_path = dir / "tokenizer.json", tc_path = dir / "tokenizer_config.json";
  if (!fs::exists(tj_path)) fail("'" + dir.string() + "' has no tokenizer.json (needed for the GGUF vocabulary)");
  const json tj = read_json_file(tj_path.string(), "quantize");
  const json tc = fs::exists(tc_path) ? read_json_file(tc_path.string(), "quantize") : json::object();
  const json& model = tj.at("model");
  if (model.value("type", "") != "BPE") fail("tokenizer.json: only BPE tokenizers can be written to GGUF (got '" + model.value("type", "?") + "')");
  const std::string pre_json = tj.contains("pre_tokenizer") ? tj["pre_tokenizer"].dump() : "";
  if (pre_json.find("ByteLevel") == std::string::npos)
    fail("tokenizer.json: not a byte-level BPE tokenizer (SentencePiece-style vocabularies are not supported; use llama.cpp's convert_hf_to_gguf.py)");
  Vocab v;
  for (const PreTokenizer& p : kPreTokenizers)
    if (pre_json.find(json(p.regex).dump()) != std::string::npos) v.pre = p.name;
  if (v.pre.empty()) fail("tokenizer.json: a pre-tokenizer llama.cpp does not know by meshlm (supported: qwen2, llama-bpe)");

  std::vector<std::string> id2tok(static_cast<size_t>(vocab_size));
  std::vector<bool> have(static_cast<size_t>(vocab_size), false);
  auto put = [&](int64_t id, const std::string& t) {
    if (id < 0 || id >= vocab_size)
      fail("tokenizer.json: token id " + std::to_string(id) + " is outside vocab_size " + std::to_string(vocab_size));
    id2tok[size_t(id)] = t;
    have[size_t(id)] = true;
  };
  for (const auto& el : model.at("vocab").items()) put(el.value().get<int64_t>(), el.key());
  std::map<int64_t, const json*> added;
  if (tj.contains("added_tokens"))
    for (const json& a : tj["added_tokens"]) {
      put(a.at("id").get<int64_t>(), a.at("content").get<std::string>());
      added[a["id"].get<int64_t>()] = &a;
    }
  v.tokens.reserve(size_t(vocab_size));
  for (int64_t i = 0; i < vocab_size; ++i) {
    if (!have[size_t(i)]) {
      v.tokens.push_back("[PAD" + std::to_string(i) + "]");
      v.types.push_back(kTokenUnused);
      continue;
    }
    const std::string& t = id2tok[size_t(i)];
    if (auto it = added.find(i); it != added.end())
      v.types.push_back(it->second->value("special", false) || looks_special(t) ? kTokenControl : kTokenUserDefined);
    else
      v.types.push_back(kTokenNormal);
    v.tokens.push_back(t);
  }
  for (const json& m : model.value("merges", json::array())) v.merges.push_back(merge_string(m));

  auto added_id = [&](const json& entry) -> std::optional<int64_t> {
    const json* e = &entry;
    if (e->is_object()) {
      if (!e->contains("content")) return std::nullopt;
      e = &(*e)["content"];
    }
    if (!e->is_string()) return std::nullopt;
    if (tj.contains("added_tokens"))
      for (const json& a : tj["added_tokens"])
        if (a.value("content", "") == e->get<std::string>()) return a["id"].get<int64_t>();
    return std::nullopt;
  };
  std::map<std::string, int64_t> special;
  for (const char* typ : {"bos", "eos", "unk", "sep", "pad"}) {
    if (auto it = tc.find(std::string(typ) + "_token"); it != tc.end())
      if (auto id = added_id(*it)) special[typ] = *id;
    if (!special.count(typ))
      if (auto it = config.find(std::string(typ) + "_token_id"); it != config.end() && it->is_number_integer())
        special[typ] = it->get<int64_t>();
  }
  const std::pair<const char*, const char*> keys[] = {{"eos", "tokenizer.ggml.eos_token_id"},
                                                      {"pad", "tokenizer.ggml.padding_token_id"},
                                                      {"bos", "tokenizer.ggml.bos_token_id"},
                                                      {"unk", "tokenizer.ggml.unknown_token_id"},
                                                      {"sep", "tokenizer.ggml.seperator_token_id"}};
  for (const auto& [typ, key] : keys)
    if (special.count(typ)) v.special.emplace_back(key, special[typ]);
  if (auto it = tc.find("add_bos_token"); it != tc.end() && it->is_boolean()) v.add_bos = it->get<bool>();
  if (auto it = tc.find("add_eos_token"); it != tc.end() && it->is_boolean()) v.add_eos = it->get<bool>();
  if (auto it = tc.find("chat_template"); it != tc.end() && it->is_string())
    v.chat_template = it->get<std::string>();
  else if (fs::exists(dir / "chat_template.jinja"))
    v.chat_template = read_text(dir / "chat_template.jinja");
  return v;
}

// ---- metadata ----------------------------------------------------------------------------------

uint32_t u32_of(const json& config, const char* key) {
  const json& v = config.at(key);
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > int64_t(UINT32_MAX))
    fail(std::string("config.json: '") + key + "' is not a u32");
  return uint32_t(v.get<int64_t>());
}

}  // namespace

std::vector<float> llama3_rope_freqs(int64_t head_dim, double rope_theta, double factor, double low_freq_factor,
                                     double high_freq_factor, double original_max_position) {
  const double low_freq_wavelen = original_max_position / low_freq_factor;
  const double high_freq_wavelen = original_max_position / high_freq_factor;
  const float two_pi = float(2 * std::numbers::pi);
  std::vector<float> out;
  for (int64_t i = 0; i < head_dim; i += 2) {
    const float expo = float(i) / float(head_dim);
    const float freq = 1.0f / std::pow(float(rope_theta), expo);
    const float wavelen = (1.0f / freq) * two_pi;
    if (double(wavelen) < high_freq_wavelen) {
      out.push_back(1.0f);
    } else if (double(wavelen) > low_freq_wavelen) {
      out.push_back(float(factor));
    } else {
      const float smooth = ((1.0f / wavelen) * float(original_max_position) - float(low_freq_factor)) /
                           float(high_freq_factor - low_freq_factor);
      const float d = (1.0f - smooth) / float(factor) + smooth;
      out.push_back((1.0f / d) * 1.0f);
    }
  }
  return out;
}

SourceModel open_hf_source(const std::string& dir_str, const std::string& name_arg) {
  const fs::path dir(dir_str);
  const json config = read_json_file((dir / "config.json").string(), "quantize");
  if (config.contains("quantization") || config.contains("quantization_config"))
    fail("'" + dir_str + "' holds an already quantized model (config.json has quantization settings); quantize from the original weights");
  const model::ModelConfig cfg = model::ModelConfig::from_json(config);
  const model::ArchTraits* arch = model::find_arch(cfg.model_type);
  if (!arch || !arch->gguf_arch) fail("architecture '" + cfg.model_type + "' has no GGUF mapping");
  const std::string A = arch->gguf_arch;

  auto set = std::make_shared<std::unique_ptr<model::SafetensorsSet>>(model::SafetensorsSet::open_dir(dir_str));
  const model::SafetensorsSet& st = **set;

  SourceModel src;
  src.path = dir_str;
  src.from_hf = true;
  src.keep_alive = set;
  src.facts = {A, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.n_experts};

  // The folder's dtype: the converter's file type when it keeps it.
  const model::TensorInfo& embed = st.info("model.embed_tokens.weight");
  const uint32_t file_type = embed.dtype == WeightType::BF16 ? 32 : embed.dtype == WeightType::F16 ? 1 : 0;

  // ---- metadata, in the converter's order
  std::string name = name_arg;
  if (name.empty()) {
    fs::path p = fs::absolute(dir).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    name = p.filename().string();
    // A Hugging Face cache snapshot (models--ORG--NAME/snapshots/HASH): the model's name.
    const std::string repo = p.parent_path().parent_path().filename().string();
    if (p.parent_path().filename() == "snapshots" && repo.rfind("models--", 0) == 0)
      name = repo.substr(repo.rfind("--") + 2);
  }
  auto& md = src.metadata;
  auto add = [&](std::string key, GgufValue v) { md.emplace_back(std::move(key), std::move(v)); };
  add("general.architecture", GgufValue::from_string(A));
  add("general.type", GgufValue::from_string("model"));
  add("general.name", GgufValue::from_string(name));
  add(A + ".block_count", GgufValue::from_u32(u32_of(config, "num_hidden_layers")));
  if (config.contains("max_position_embeddings"))
    add(A + ".context_length", GgufValue::from_u32(u32_of(config, "max_position_embeddings")));
  add(A + ".embedding_length", GgufValue::from_u32(u32_of(config, "hidden_size")));
  add(A + ".feed_forward_length", GgufValue::from_u32(u32_of(config, "intermediate_size")));
  add(A + ".attention.head_count", GgufValue::from_u32(u32_of(config, "num_attention_heads")));
  if (config.contains("num_key_value_heads"))
    add(A + ".attention.head_count_kv", GgufValue::from_u32(u32_of(config, "num_key_value_heads")));
  if (cfg.rope_scaling == model::RopeScaling::Linear) {
    add(A + ".rope.scaling.type", GgufValue::from_string("linear"));
    add(A + ".rope.scaling.factor", GgufValue::from_f32(float(cfg.rope_factor)));
  }
  if (auto it = config.find("rope_theta"); it != config.end() && it->is_number())
    add(A + ".rope.freq_base", GgufValue::from_f32(it->get<float>()));
  if (auto it = config.find("rms_norm_eps"); it != config.end() && it->is_number())
    add(A + ".attention.layer_norm_rms_epsilon", GgufValue::from_f32(it->get<float>()));
  if (auto it = config.find("head_dim"); it != config.end() && it->is_number_integer()) {
    add(A + ".attention.key_length", GgufValue::from_u32(u32_of(config, "head_dim")));
    add(A + ".attention.value_length", GgufValue::from_u32(u32_of(config, "head_dim")));
  }
  if (cfg.is_moe()) {  // the converter's expert keys
    add(A + ".expert_count", GgufValue::from_u32(uint32_t(cfg.n_experts)));
    add(A + ".expert_used_count", GgufValue::from_u32(uint32_t(cfg.n_experts_used)));
    if (cfg.model_type != "mixtral")
      add(A + ".expert_feed_forward_length", GgufValue::from_u32(uint32_t(cfg.moe_intermediate)));
    if (cfg.shared_expert_intermediate > 0)
      add(A + ".expert_shared_feed_forward_length", GgufValue::from_u32(uint32_t(cfg.shared_expert_intermediate)));
    // llama.cpp's qwen3moe / llama graphs always renormalise the top-k and qwen2moe's never:
    // a configuration that differs cannot be written as a file llama.cpp would run the same.
    const bool llama_norm = cfg.model_type != "qwen2_moe";
    if (cfg.norm_topk_prob != llama_norm)
      fail("norm_topk_prob " + std::string(cfg.norm_topk_prob ? "true" : "false") + " in a " + cfg.model_type +
           " model: llama.cpp's " + A + " always " + (llama_norm ? "renormalises" : "keeps") +
           " the top-k expert weights");
  }
  if (A == "llama") {  // LlamaModel adds these two
    add(A + ".vocab_size", GgufValue::from_u32(uint32_t(cfg.vocab)));
    add(A + ".rope.dimension_count", GgufValue::from_u32(uint32_t(cfg.head_dim)));
  }
  add("general.file_type", GgufValue::from_u32(file_type));
  add("general.quantization_version", GgufValue::from_u32(2));
  Vocab v = read_vocab(dir, config, cfg.vocab);
  add("tokenizer.ggml.model", GgufValue::from_string("gpt2"));
  add("tokenizer.ggml.pre", GgufValue::from_string(v.pre));
  add("tokenizer.ggml.tokens", GgufValue::string_array(std::move(v.tokens)));
  add("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::I32, std::move(v.types)));
  add("tokenizer.ggml.merges", GgufValue::string_array(std::move(v.merges)));
  for (const auto& [key, id] : v.special) add(key, GgufValue::from_u32(uint32_t(id)));
  if (v.add_bos) add("tokenizer.ggml.add_bos_token", GgufValue::from_bool(*v.add_bos));
  if (v.add_eos) add("tokenizer.ggml.add_eos_token", GgufValue::from_bool(*v.add_eos));
  if (v.chat_template) add("tokenizer.chat_template", GgufValue::from_string(*v.chat_template));

  // ---- tensors
  if (arch->gguf_permute_qk && cfg.rope_scaling == model::RopeScaling::Llama3) {
    auto freqs = std::make_shared<std::vector<float>>(
        llama3_rope_freqs(cfg.head_dim, config.value("rope_theta", 10000.0), cfg.rope_factor, cfg.rope_low_freq_factor,
                          cfg.rope_high_freq_factor, double(cfg.rope_original_max_position)));
    SourceTensor t;
    t.name = "rope_freqs.weight";
    t.shape = {int64_t(freqs->size())};
    t.type = WeightType::F32;
    t.bytes = {reinterpret_cast<const uint8_t*>(freqs->data()), freqs->size() * sizeof(float)};
    t.read_rows = [freqs](int64_t, int64_t, float* dst) { std::copy(freqs->begin(), freqs->end(), dst); };
    src.tensors.push_back(std::move(t));
  }
  const std::vector<model::TensorDesc> descs = model::model_tensors(cfg);
  for (size_t di = 0; di < descs.size(); ++di) {
    const model::TensorDesc& d = descs[di];
    // A layer's experts are written once, stacked, at its first expert tensor.
    if (d.expert > 0 || (d.expert == 0 && d.role != TensorRole::ExpGate)) continue;
    if (d.expert == 0) {
      // The converter stacks a layer's experts into one [n_experts, rows, cols] tensor per role,
      // down, gate, up, where the layer's first expert tensor is.
      for (TensorRole role : {TensorRole::ExpDown, TensorRole::ExpGate, TensorRole::ExpUp}) {
        std::vector<const uint8_t*> parts;
        std::vector<int64_t> shape;
        WeightType dtype = WeightType::F32;
        std::string gguf_name;
        for (const model::TensorDesc& e : descs) {
          if (e.layer != d.layer || e.role != role) continue;
          const model::TensorInfo& info = st.info(e.name);
          if (!info.dtype_supported || !formats::info(info.dtype).plain())
            fail("tensor '" + e.name + "' has dtype " + info.dtype_name + " (F32, BF16 or F16 expected)");
          if (info.shape != e.shape) fail("tensor '" + e.name + "' does not have the shape config.json implies");
          if (!parts.empty() && info.dtype != dtype)
            fail("tensor '" + e.name + "' has another dtype than the layer's other experts");
          dtype = info.dtype;
          shape = e.shape;
          gguf_name = e.gguf_name;
          parts.push_back(st.data(info));
        }
        SourceTensor t;
        t.name = gguf_name;
        t.shape = {int64_t(parts.size()), shape[0], shape[1]};
        t.type = dtype;
        const int64_t rows = shape[0], cols = shape[1];
        const size_t row_bytes = formats::row_bytes(dtype, cols);
        t.read_rows = [parts, dtype, rows, cols, row_bytes](int64_t first, int64_t n, float* dst) {
          for (int64_t k = 0; k < n; ++k) {
            const int64_t r = first + k;
            formats::dequantize_row(dtype, parts[size_t(r / rows)] + size_t(r % rows) * row_bytes, cols,
                                    dst + k * cols);
          }
        };
        src.tensors.push_back(std::move(t));
      }
      continue;
    }
    const model::TensorInfo& info = st.info(d.name);
    if (!info.dtype_supported || !formats::info(info.dtype).plain())
      fail("tensor '" + d.name + "' has dtype " + info.dtype_name + " (F32, BF16 or F16 expected)");
    if (info.shape != d.shape) {
      std::string want, got;
      for (int64_t x : d.shape) want += (want.empty() ? "" : ", ") + std::to_string(x);
      for (int64_t x : info.shape) got += (got.empty() ? "" : ", ") + std::to_string(x);
      fail("tensor '" + d.name + "' has shape [" + got + "], config.json implies [" + want + "]");
    }
    SourceTensor t;
    t.name = d.gguf_name;  // the schema's llama.cpp name
    t.shape = d.shape;
    const uint8_t* data = st.data(info);
    const WeightType dtype = info.dtype;
    const int64_t cols = t.cols();
    const size_t row_bytes = formats::row_bytes(dtype, cols);
    // Rows of q/k, per head: HF [first halves | second halves] -> interleaved pairs.
    int64_t perm_heads = 0;
    if (arch->gguf_permute_qk && (d.role == TensorRole::Wq || d.role == TensorRole::Bq)) perm_heads = cfg.n_heads;
    if (arch->gguf_permute_qk && (d.role == TensorRole::Wk || d.role == TensorRole::Bk)) perm_heads = cfg.n_kv_heads;
    const bool one_d = d.shape.size() == 1;
    t.type = one_d ? WeightType::F32 : dtype;
    if (one_d && perm_heads > 0) {
      // A bias: one row whose elements are permuted.
      const int64_t n = cols, hd = n / perm_heads, half = hd / 2;
      t.read_rows = [data, dtype, n, hd, half](int64_t, int64_t, float* dst) {
        std::vector<float> row(size_t(n), 0.0f);
        formats::dequantize_row(dtype, data, n, row.data());
        for (int64_t i = 0; i < n; ++i) {
          const int64_t h = i / hd, r = i % hd;
          dst[i] = row[size_t(h * hd + (r % 2) * half + r / 2)];
        }
      };
    } else if (perm_heads > 0) {
      const int64_t hd = t.rows() / perm_heads, half = hd / 2;
      t.read_rows = [data, dtype, cols, row_bytes, hd, half](int64_t first, int64_t n, float* dst) {
        for (int64_t k = 0; k < n; ++k) {
          const int64_t r = first + k, h = r / hd, j = r % hd;
          const int64_t from = h * hd + (j % 2) * half + j / 2;
          formats::dequantize_row(dtype, data + size_t(from) * row_bytes, cols, dst + k * cols);
        }
      };
    } else {
      if (t.type == dtype) t.bytes = {data, info.nbytes};
      t.read_rows = [data, dtype, cols, row_bytes](int64_t first, int64_t n, float* dst) {
        for (int64_t k = 0; k < n; ++k)
          formats::dequantize_row(dtype, data + size_t(first + k) * row_bytes, cols, dst + k * cols);
      };
    }
    src.tensors.push_back(std::move(t));
  }
  return src;
}

}  // namespace meshlm::convert
