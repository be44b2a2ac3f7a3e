// GGUF tokenizer.* metadata -> the equivalent tokenizer.json / tokenizer_config.json texts
// (see gguf_tokenizer.h). The facts used: llama.cpp's GGUF keys and token types, which split regex
// each tokenizer.ggml.pre value stands for (llama.cpp src/llama-vocab.cpp, regexes as in the
// models' tokenizer.json), and how transformers' converter derives SentencePiece merges from the
// piece scores.
#include "tokenizer/gguf_tokenizer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "formats/gguf.h"
#include "core/utf8.h"

namespace meshlm::tok {
namespace {

namespace fs = std::filesystem;
using formats::GgufMetadata;
using formats::GgufType;
using formats::GgufValue;

constexpr const char* kModelKey = "tokenizer.ggml.model";
constexpr const char* kPreKey = "tokenizer.ggml.pre";
constexpr const char* kTokensKey = "tokenizer.ggml.tokens";
constexpr const char* kTypesKey = "tokenizer.ggml.token_type";
constexpr const char* kScoresKey = "tokenizer.ggml.scores";
constexpr const char* kMergesKey = "tokenizer.ggml.merges";
constexpr const char* kAddBosKey = "tokenizer.ggml.add_bos_token";
constexpr const char* kAddEosKey = "tokenizer.ggml.add_eos_token";
constexpr const char* kAddSpacePrefixKey = "tokenizer.ggml.add_space_prefix";
constexpr const char* kChatTemplateKey = "tokenizer.chat_template";

// llama.cpp's token types (tokenizer.ggml.token_type).
enum TokenType : int64_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// The split regexes, as the models' own tokenizer.json spells them.
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// What a byte-level tokenizer.ggml.pre value means in tokenizer.json terms.
struct PreTokenizerSpec {
  std::vector<std::string_view> names;
  std::string_view split_regex;  // empty: ByteLevel's own GPT-2 regex
  bool nfc = false;              // an NFC normalizer (Qwen2)
  bool ignore_merges = false;    // a word in the vocab is one token (Llama 3)
  bool add_bos = false;          // llama.cpp's default when add_bos_token is absent
};

const std::vector<PreTokenizerSpec>& pre_tokenizer_specs() {
  static const std::vector<PreTokenizerSpec> specs = {
      {{"qwen2", "deepseek-r1-qwen"}, kQwen2Regex, true, false, false},
      {{"llama-bpe", "llama3", "llama-v3"}, kLlama3Regex, false, true, true},
      {{"gpt-2"}, {}, false, false, false},
  };
  return specs;
}

// ---- metadata access with tokenizer-tagged errors naming the key

std::string where(const GgufMetadata& md) {
  return md.source().empty() ? std::string("GGUF") : "'" + md.source() + "'";
}

[[noreturn]] void fail(const GgufMetadata& md, const std::string& msg) {
  throw Error("tokenizer", where(md) + ": " + msg);
}

const GgufValue& require(const GgufMetadata& md, const char* key) {
  const GgufValue* v = md.find(key);
  if (!v) fail(md, std::string("key '") + key + "' is missing");
  return *v;
}

std::vector<std::string> string_array(const GgufMetadata& md, const char* key) {
  const GgufValue& v = require(md, key);
  if (!v.is_array() || v.element_type() != GgufType::String)
    fail(md, std::string("key '") + key + "' must be an array of strings, not " + v.describe());
  return md.get_string_array(key);
}

std::optional<std::vector<int64_t>> opt_int_array(const GgufMetadata& md, const char* key) {
  const GgufValue* v = md.find(key);
  if (!v) return std::nullopt;
  if (!v->is_array() || !formats::gguf_is_integer(v->element_type()))
    fail(md, std::string("key '") + key + "' must be an array of integers, not " + v->describe());
  return md.get_int_array(key);
}

std::vector<float> float_array(const GgufMetadata& md, const char* key) {
  const GgufValue& v = require(md, key);
  if (!v.is_array() || !formats::gguf_is_float(v.element_type()))
    fail(md, std::string("key '") + key + "' must be an array of floats, not " + v.describe());
  return md.get_float_array(key);
}

std::optional<bool> opt_bool(const GgufMetadata& md, const char* key) {
  const GgufValue* v = md.find(key);
  if (!v) return std::nullopt;
  std::optional<bool> b = v->is_array() ? std::nullopt : v->as_bool();
  if (!b) fail(md, std::string("key '") + key + "' must be a bool, not " + v->describe());
  return b;
}

std::optional<std::string> opt_string(const GgufMetadata& md, const char* key) {
  const GgufValue* v = md.find(key);
  if (!v) return std::nullopt;
  const std::string* s = v->is_array() ? nullptr : v->as_string();
  if (!s) fail(md, std::string("key '") + key + "' must be a string, not " + v->describe());
  return *s;
}

// ---- JSON text

void append_json_string(std::string& out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  out.push_back('"');
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      out += "\\u00";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

std::string json_string(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

// ---- the vocabulary

// Everything the tokenizer.json is made of, read and checked once.
struct GgufVocab {
  std::string kind;  // tokenizer.ggml.model
  std::vector<std::string> tokens;
  std::vector<int64_t> types;
  // Token text -> id; the first id wins when a text repeats (later ones are unreachable).
  std::unordered_map<std::string_view, int32_t> index;
  std::vector<bool> in_vocab;  // ids written into the model's vocab
  std::optional<int32_t> bos, eos, unk, pad;
  // Whether encode(text, true) adds BOS / EOS.
  bool add_bos = false, add_eos = false;
};

const PreTokenizerSpec& find_pre(const GgufMetadata& md) {
  std::optional<std::string> pre = opt_string(md, kPreKey);
  std::string known;
  for (const std::string& name : gguf_pre_tokenizers()) known += (known.empty() ? "" : ", ") + name;
  if (!pre)
    fail(md, std::string("key '") + kPreKey + "' is missing: the split regex of a byte-level " +
                 "tokenizer is unknown without it (known: " + known + ")");
  for (const PreTokenizerSpec& s : pre_tokenizer_specs())
    if (std::find(s.names.begin(), s.names.end(), *pre) != s.names.end()) return s;
  fail(md, std::string("key '") + kPreKey + "' is '" + *pre +
               "', a pre-tokenizer meshlm does not know (known: " + known + ")");
}

std::optional<int32_t> special_id(const GgufMetadata& md, const std::string& key, size_t n_tokens) {
  const GgufValue* v = md.find(key);
  if (!v) return std::nullopt;
  std::optional<int64_t> id = v->is_array() ? std::nullopt : v->as_i64();
  if (!id) fail(md, "key '" + key + "' must be an integer, not " + v->describe());
  if (*id < 0 || static_cast<uint64_t>(*id) >= n_tokens)
    fail(md, "key '" + key + "' is " + std::to_string(*id) +
                 ", not a token id (the vocabulary has " + std::to_string(n_tokens) + " tokens)");
  return static_cast<int32_t>(*id);
}

GgufVocab read_vocab(const GgufMetadata& md) {
  GgufVocab v;
  std::optional<std::string> kind = opt_string(md, kModelKey);
  if (!kind) fail(md, std::string("key '") + kModelKey + "' is missing");
  v.kind = std::move(*kind);
  if (v.kind != "gpt2" && v.kind != "llama")
    fail(md, std::string("key '") + kModelKey + "' is '" + v.kind +
                 "': only 'gpt2' (byte-level BPE) and 'llama' (SentencePiece BPE) tokenizers are "
                 "supported");
  v.tokens = string_array(md, kTokensKey);
  const size_t n = v.tokens.size();
  if (n == 0) fail(md, std::string("key '") + kTokensKey + "' is empty");
  if (n > size_t(INT32_MAX)) fail(md, std::string("key '") + kTokensKey + "' is too long");
  if (auto types = opt_int_array(md, kTypesKey)) {
    if (types->size() != n)
      fail(md, std::string("key '") + kTypesKey + "' has " + std::to_string(types->size()) +
                   " entries but '" + kTokensKey + "' has " + std::to_string(n));
    for (size_t i = 0; i < n; ++i)
      if ((*types)[i] < kUndefined || (*types)[i] > kByte)
        fail(md, std::string("key '") + kTypesKey + "'[" + std::to_string(i) + "] is " +
                     std::to_string((*types)[i]) + ", not a token type (0..6)");
    v.types = std::move(*types);
  } else {
    v.types.assign(n, kNormal);
  }
  // Byte-level vocabularies carry the converter's "[PADn]" fillers as unused tokens: they are no
  // part of the Hugging Face vocabulary. SentencePiece keeps every piece (its merges may use them).
  const bool skip_unused = v.kind == "gpt2";
  v.in_vocab.assign(n, false);
  v.index.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    if (!utf8_is_valid(v.tokens[i]))
      fail(md,
           std::string("key '") + kTokensKey + "'[" + std::to_string(i) + "] is not valid UTF-8");
    if (skip_unused && v.types[i] == kUnused) continue;
    if (v.index.emplace(v.tokens[i], static_cast<int32_t>(i)).second) v.in_vocab[i] = true;
  }
  v.bos = special_id(md, "tokenizer.ggml.bos_token_id", n);
  v.eos = special_id(md, "tokenizer.ggml.eos_token_id", n);
  v.unk = special_id(md, "tokenizer.ggml.unknown_token_id", n);
  v.pad = special_id(md, "tokenizer.ggml.padding_token_id", n);
  if (!v.unk && v.kind == "llama") {
    for (size_t i = 0; i < n; ++i)
      if (v.types[i] == kUnknown && v.in_vocab[i]) {
        v.unk = static_cast<int32_t>(i);
        break;
      }
  }
  if (auto b = opt_bool(md, kAddBosKey)) {
    if (*b && !v.bos)
      fail(md, std::string("key '") + kAddBosKey +
                   "' is true but 'tokenizer.ggml.bos_token_id' is missing");
    v.add_bos = *b;
  } else {
    // llama.cpp's default; nothing to add without a BOS token.
    v.add_bos = v.bos && (v.kind == "llama" || find_pre(md).add_bos);
  }
  v.add_eos = opt_bool(md, kAddEosKey).value_or(false);
  if (v.add_eos && !v.eos)
    fail(md, std::string("key '") + kAddEosKey +
                 "' is true but 'tokenizer.ggml.eos_token_id' is missing");
  return v;
}

// ---- tokenizer.json sections

void append_vocab(std::string& out, const GgufVocab& v) {
  out += "{";
  bool first = true;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (!v.in_vocab[i]) continue;
    if (!first) out.push_back(',');
    first = false;
    append_json_string(out, v.tokens[i]);
    out.push_back(':');
    out += std::to_string(i);
  }
  out += "}";
}

void append_merge(std::string& out, bool& first, std::string_view a, std::string_view b) {
  if (!first) out.push_back(',');
  first = false;
  out.push_back('[');
  append_json_string(out, a);
  out.push_back(',');
  append_json_string(out, b);
  out.push_back(']');
}

// tokenizer.ggml.merges ("a b", split at the first space after the first character, as llama.cpp
// reads them), checked against the vocabulary.
void append_stored_merges(std::string& out, const GgufMetadata& md, const GgufVocab& v) {
  const std::vector<std::string> merges = string_array(md, kMergesKey);
  out += "[";
  bool first = true;
  std::string joined;
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& m = merges[i];
    auto bad = [&](const std::string& why) {
      fail(md,
           std::string("key '") + kMergesKey + "'[" + std::to_string(i) + "] '" + m + "' " + why);
    };
    const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    if (sp == std::string::npos) bad("is not of the form 'a b'");
    std::string_view a(m.data(), sp), b(m.data() + sp + 1, m.size() - sp - 1);
    if (!v.index.contains(a)) bad("names '" + std::string(a) + "', which is not a token");
    if (!v.index.contains(b)) bad("names '" + std::string(b) + "', which is not a token");
    joined.assign(a);
    joined += b;
    if (!v.index.contains(joined)) bad("makes '" + joined + "', which is not a token");
    append_merge(out, first, a, b);
  }
  out += "]";
}

// SentencePiece merges from the scores, as transformers' converter makes them: every split of
// every piece (at character boundaries) into two pieces of the vocabulary is a merge with the
// piece's score; a piece's splits are ordered by (left id, right id), pieces by id, and the whole
// list is then stably sorted by score, highest first.
void append_score_merges(std::string& out, const GgufMetadata& md, const GgufVocab& v) {
  const std::vector<float> scores = float_array(md, kScoresKey);
  if (scores.size() != v.tokens.size())
    fail(md, std::string("key '") + kScoresKey + "' has " + std::to_string(scores.size()) +
                 " entries but '" + kTokensKey + "' has " + std::to_string(v.tokens.size()));
  struct Candidate {
    float score;
    int32_t left, right;
  };
  std::vector<Candidate> merges, local;
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    if (!v.in_vocab[id]) continue;
    if (std::isnan(scores[id]))
      fail(md, std::string("key '") + kScoresKey + "'[" + std::to_string(id) + "] is NaN");
    const std::string_view piece = v.tokens[id];
    if (piece.size() < 2) continue;
    local.clear();
    for (size_t pos = utf8_char_len(piece[0]); pos < piece.size();
         pos += utf8_char_len(piece[pos])) {
      auto l = v.index.find(piece.substr(0, pos));
      if (l == v.index.end()) continue;
      auto r = v.index.find(piece.substr(pos));
      if (r == v.index.end()) continue;
      local.push_back({scores[id], l->second, r->second});
    }
    std::sort(local.begin(), local.end(), [](const Candidate& x, const Candidate& y) {
      return x.left != y.left ? x.left < y.left : x.right < y.right;
    });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(),
                   [](const Candidate& x, const Candidate& y) { return x.score > y.score; });
  out += "[";
  bool first = true;
  for (const Candidate& m : merges) append_merge(out, first, v.tokens[m.left], v.tokens[m.right]);
  out += "]";
}

void append_added_tokens(std::string& out, const GgufVocab& v) {
  out += "[";
  bool first = true;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int64_t t = v.types[i];
    if (!v.in_vocab[i] || (t != kControl && t != kUnknown && t != kUserDefined)) continue;
    if (!first) out.push_back(',');
    first = false;
    out += "{\"id\":" + std::to_string(i) + ",\"content\":";
    append_json_string(out, v.tokens[i]);
    out += ",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,";
    out += t == kUserDefined ? "\"special\":false}" : "\"special\":true}";
  }
  out += "]";
}

// TemplateProcessing adding BOS / EOS, or "null" when neither is added.
std::string post_processor(const GgufVocab& v) {
  const bool add_bos = v.add_bos, add_eos = v.add_eos;
  if (!add_bos && !add_eos) return "null";
  auto special = [&](int32_t id) {
    return "{\"SpecialToken\":{\"id\":" + json_string(v.tokens[id]) + ",\"type_id\":0}}";
  };
  std::string single = "[";
  if (add_bos) single += special(*v.bos) + ",";
  single += "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}";
  if (add_eos) single += "," + special(*v.eos);
  single += "]";
  std::map<std::string, int32_t> names;
  if (add_bos) names[v.tokens[*v.bos]] = *v.bos;
  if (add_eos) names[v.tokens[*v.eos]] = *v.eos;
  std::string specials = "{";
  for (const auto& [name, id] : names) {
    if (specials.size() > 1) specials += ",";
    specials += json_string(name) + ":{\"id\":" + json_string(name) + ",\"ids\":[" +
                std::to_string(id) + "],\"tokens\":[" + json_string(name) + "]}";
  }
  specials += "}";
  return "{\"type\":\"TemplateProcessing\",\"single\":" + single +
         ",\"special_tokens\":" + specials + "}";
}

std::string tokenizer_json(const GgufMetadata& md, const GgufVocab& v) {
  std::string out;
  out.reserve(v.tokens.size() * 48);
  out += "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":";
  append_added_tokens(out, v);
  if (v.kind == "gpt2") {
    const PreTokenizerSpec& pre = find_pre(md);
    const std::string byte_level =
        std::string("{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,") +
        "\"use_regex\":" + (pre.split_regex.empty() ? "true" : "false") + "}";
    out += ",\"normalizer\":";
    out += pre.nfc ? "{\"type\":\"NFC\"}" : "null";
    out += ",\"pre_tokenizer\":";
    if (pre.split_regex.empty()) {
      out += byte_level;
    } else {
      out +=
          "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":";
      append_json_string(out, pre.split_regex);
      out += "},\"behavior\":\"Isolated\",\"invert\":false}," + byte_level + "]}";
    }
    out += ",\"post_processor\":";
    out += post_processor(v);
    out +=
        ",\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
        "\"trim_offsets\":false,\"use_regex\":false}";
    out +=
        ",\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,"
        "\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":false,"
        "\"byte_fallback\":false,\"ignore_merges\":";
    out += pre.ignore_merges ? "true" : "false";
    out += ",\"vocab\":";
    append_vocab(out, v);
    out += ",\"merges\":";
    append_stored_merges(out, md, v);
    out += "}}";
    return out;
  }
  // SentencePiece ("llama"): spaces become "▁", and a "▁" starts the text unless the file says
  // add_space_prefix = false; decoding undoes both.
  const bool space_prefix = opt_bool(md, kAddSpacePrefixKey).value_or(true);
  const std::string replace_space = R"({"type":"Replace","pattern":{"String":" "},"content":"▁"})";
  out += ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[";
  if (space_prefix) out += R"({"type":"Prepend","prepend":"▁"},)";
  out += replace_space + "]}";
  out += ",\"pre_tokenizer\":null,\"post_processor\":";
  out += post_processor(v);
  out +=
      R"(,"decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"})";
  if (space_prefix) out += R"(,{"type":"Strip","content":" ","start":1,"stop":0})";
  out += "]}";
  out += ",\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":";
  out += v.unk ? json_string(v.tokens[*v.unk]) : std::string("null");
  out +=
      ",\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":true,"
      "\"byte_fallback\":true,\"ignore_merges\":false,\"vocab\":";
  append_vocab(out, v);
  out += ",\"merges\":";
  append_score_merges(out, md, v);
  out += "}}";
  return out;
}

std::string tokenizer_config_json(const GgufMetadata& md, const GgufVocab& v) {
  std::string out = "{";
  auto token = [&](const char* name, const std::optional<int32_t>& id) {
    out += std::string("\"") + name + "\":";
    out += id ? json_string(v.tokens[*id]) : std::string("null");
    out += ",";
  };
  token("bos_token", v.bos);
  token("eos_token", v.eos);
  token("unk_token", v.unk);
  token("pad_token", v.pad);
  out += std::string("\"add_bos_token\":") + (v.add_bos ? "true" : "false");
  out += std::string(",\"add_eos_token\":") + (v.add_eos ? "true" : "false");
  if (auto tmpl = opt_string(md, kChatTemplateKey)) {
    out += ",\"chat_template\":";
    append_json_string(out, *tmpl);
  }
  out += "}";
  return out;
}

}  // namespace

std::vector<std::string> gguf_pre_tokenizers() {
  std::vector<std::string> names;
  for (const PreTokenizerSpec& s : pre_tokenizer_specs())
    for (std::string_view n : s.names) names.emplace_back(n);
  return names;
}

std::string gguf_tokenizer_json(const GgufMetadata& md) {
  return tokenizer_json(md, read_vocab(md));
}

std::string gguf_tokenizer_config_json(const GgufMetadata& md) {
  return tokenizer_config_json(md, read_vocab(md));
}

std::unique_ptr<Tokenizer> load_tokenizer_from_gguf(const GgufMetadata& md) {
  const GgufVocab v = read_vocab(md);
  return Tokenizer::load_from_json(tokenizer_json(md, v), tokenizer_config_json(md, v));
}

bool is_gguf_model_path(const std::string& path) { return formats::is_gguf_model_path(path); }

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& model_path) {
  if (!is_gguf_model_path(model_path)) return load_from_dir(model_path);
  formats::GgufModel model = formats::GgufModel::open(model_path);
  return load_tokenizer_from_gguf(model.metadata());
}

}  // namespace meshlm::tok
