// The Tokenizer implementation: loading tokenizer.json (+ tokenizer_config.json) and the
// encode / decode pipelines of the Rust `tokenizers` library:
//   encode: added tokens (raw) -> normalizer -> added tokens (normalized) -> pre-tokenizer ->
//           BPE -> post-processor
//   decode: ids -> token strings (skipping specials on request) -> decoder chain -> join
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/added_vocab.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/decoders.h"
#include "tokenizer/json_lite.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/post_processors.h"
#include "tokenizer/pre_tokenizers.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::tok {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("tokenizer", "cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw Error("tokenizer", "cannot read " + path);
  return ss.str();
}

// bos_token / eos_token of tokenizer_config.json: a string or an AddedToken object.
std::optional<std::string> config_token(const JsonValue& cfg, std::string_view key) {
  const JsonValue* v = cfg.find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (v->is_string()) return v->str;
  if (v->is_object()) {
    const JsonValue* c = v->find("content");
    if (c && c->is_string()) return c->str;
  }
  throw Error("tokenizer", "tokenizer_config.json: " + std::string(key) + " has an unknown form");
}

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(std::string_view json, std::string_view config_json) {
    if (!utf8_is_valid(json)) throw Error("tokenizer", "tokenizer.json is not valid UTF-8");
    JsonCursor cur(json);
    JsonValue added, normalizer, pre_tokenizer, post_processor, decoder;
    std::string key;
    cur.expect('{');
    if (!cur.consume('}')) {
      do {
        cur.parse_string(key);
        cur.expect(':');
        if (key == "model") {
          if (cur.peek() != '{') cur.fail("model must be an object");
          model_ = BpeModel::parse(cur);
        } else if (key == "added_tokens") {
          added = cur.parse_value();
        } else if (key == "normalizer") {
          normalizer = cur.parse_value();
        } else if (key == "pre_tokenizer") {
          pre_tokenizer = cur.parse_value();
        } else if (key == "post_processor") {
          post_processor = cur.parse_value();
        } else if (key == "decoder") {
          decoder = cur.parse_value();
        } else {
          cur.skip_value();  // version, truncation, padding
        }
      } while (cur.consume(','));
      cur.expect('}');
    }
    if (!cur.at_end()) cur.fail("trailing characters");
    if (!model_) throw Error("tokenizer", "tokenizer.json has no model");
    normalizer_ = make_normalizer(normalizer);
    pre_tokenizer_ = make_pre_tokenizer(pre_tokenizer);
    post_processor_ = make_post_processor(post_processor);
    decoder_ = make_decoder(decoder);
    scan_decoder(decoder);
    load_added_tokens(added);
    vocab_size_ = static_cast<size_t>(model_->max_id() + 1);
    for (const AddedToken& t : added_.tokens())
      vocab_size_ = std::max(vocab_size_, static_cast<size_t>(t.id) + 1);
    load_config(config_json);
  }

  std::vector<TokenId> encode(std::string_view text, bool add_special) const override {
    std::string clean;
    if (!utf8_is_valid(text)) {
      clean = utf8_lossy(text);
      text = clean;
    }
    std::vector<TokenId> ids;
    ids.reserve(text.size() / 3 + 4);
    std::vector<Segment> raw, norm;
    std::vector<Piece> pieces;
    added_.split(text, false, raw);
    for (const Segment& r : raw) {
      if (r.id >= 0) {
        ids.push_back(r.id);
        continue;
      }
      std::string part(text.substr(r.begin, r.end - r.begin));
      if (normalizer_) part = normalizer_->normalize(std::move(part));
      norm.clear();
      added_.split(part, true, norm);
      for (const Segment& n : norm) {
        if (n.id >= 0) {
          ids.push_back(n.id);
          continue;
        }
        pieces.clear();
        pieces.push_back(
            Piece{part.substr(n.begin, n.end - n.begin), r.begin == 0 && n.begin == 0});
        if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(pieces);
        for (const Piece& p : pieces) model_->tokenize(p.text, ids);
      }
    }
    if (add_special && post_processor_) post_processor_->process(ids);
    return ids;
  }

  std::string decode(const std::vector<TokenId>& ids, bool skip_special) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (TokenId id : ids) {
      if (const AddedToken* t = added_.by_id(id)) {
        if (skip_special && added_.is_special_content(t->content)) continue;
        tokens.push_back(t->normalized ? t->normalized_content : t->content);
      } else if (const std::string_view* s = model_->id_to_token(id)) {
        if (skip_special && added_.is_special_content(*s)) continue;
        tokens.emplace_back(*s);
      }
    }
    if (!decoder_) {
      std::string out;
      for (size_t i = 0; i < tokens.size(); ++i) {
        if (i) out.push_back(' ');
        out += tokens[i];
      }
      return out;
    }
    decoder_->decode_chain(tokens);
    std::string out;
    for (const std::string& t : tokens) out += t;
    return out;
  }

  size_t vocab_size() const override { return vocab_size_; }
  std::optional<TokenId> token_to_id(std::string_view token) const override {
    if (auto id = added_.by_content(token)) return id;
    return model_->token_to_id(token);
  }
  std::optional<std::string> id_to_token(TokenId id) const override {
    if (const AddedToken* t = added_.by_id(id)) return t->content;
    if (const std::string_view* s = model_->id_to_token(id)) return std::string(*s);
    return std::nullopt;
  }
  bool is_special(TokenId id) const override {
    const AddedToken* t = added_.by_id(id);
    return t && t->special;
  }
  std::string token_bytes(TokenId id) const override {
    std::string_view s;
    if (const AddedToken* t = added_.by_id(id))
      s = t->normalized ? t->normalized_content : t->content;
    else if (const std::string_view* m = model_->id_to_token(id))
      s = *m;
    else
      return {};
    std::string out;
    if (byte_level_) {
      for (size_t i = 0; i < s.size();) {
        int b = byte_level_byte(utf8_next(s, i));
        if (b < 0) return std::string(s);  // outside the byte alphabet: its own UTF-8
        out.push_back(static_cast<char>(b));
      }
      return out;
    }
    if (byte_fallback_ && s.size() == 6 && s.substr(0, 3) == "<0x" && s[5] == '>') {
      auto hex = [](char c) {
        return c >= '0' && c <= '9'   ? c - '0'
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                      : -1;
      };
      int hi = hex(s[3]), lo = hex(s[4]);
      if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
    }
    static constexpr std::string_view kMeta = "\xE2\x96\x81";  // U+2581, SentencePiece's space
    for (size_t i = 0; i < s.size();) {
      if (s.substr(i, kMeta.size()) == kMeta) {
        out.push_back(' ');
        i += kMeta.size();
      } else {
        out.push_back(s[i++]);
      }
    }
    return out;
  }
  std::optional<TokenId> bos_id() const override { return bos_id_; }
  std::optional<TokenId> eos_id() const override { return eos_id_; }
  std::string bos_token() const override { return bos_token_; }
  std::string eos_token() const override { return eos_token_; }
  bool add_bos_token() const override { return add_bos_; }

 private:
  void load_added_tokens(const JsonValue& added) {
    std::vector<AddedToken> tokens;
    if (added.is_null()) {
      added_.build({});
      return;
    }
    TokenId next_id = static_cast<TokenId>(model_->size());
    std::unordered_map<std::string, TokenId> assigned;
    for (const JsonValue& t : added.as_array("added_tokens")) {
      if (!t.is_object()) throw Error("tokenizer", "added token must be an object");
      AddedToken a;
      a.content = t.get_string("content", "");
      if (a.content.empty()) continue;
      a.special = t.get_bool("special", false);
      a.lstrip = t.get_bool("lstrip", false);
      a.rstrip = t.get_bool("rstrip", false);
      a.single_word = t.get_bool("single_word", false);
      a.normalized = t.get_bool("normalized", !a.special);
      // Ids are assigned as the Rust library does: the model's id when the content is in the
      // vocab, else the next free id after the model (the JSON "id" is only advisory).
      if (auto it = assigned.find(a.content); it != assigned.end()) {
        a.id = it->second;
      } else if (auto mid = model_->token_to_id(a.content)) {
        a.id = *mid;
      } else {
        a.id = next_id++;
      }
      assigned[a.content] = a.id;
      a.normalized_content = a.content;
      if (a.normalized && normalizer_) a.normalized_content = normalizer_->normalize(a.content);
      tokens.push_back(std::move(a));
    }
    added_.build(std::move(tokens));
  }

  void load_config(std::string_view config_json) {
    std::optional<std::string> bos, eos;
    if (!config_json.empty()) {
      JsonValue cfg = parse_json(config_json);
      if (!cfg.is_object()) throw Error("tokenizer", "tokenizer_config.json must be an object");
      bos = config_token(cfg, "bos_token");
      eos = config_token(cfg, "eos_token");
    }
    std::vector<TokenId> prefix, suffix;
    if (post_processor_) {
      prefix = post_processor_->prefix();
      suffix = post_processor_->suffix();
    }
    if (bos) {
      bos_token_ = *bos;
      bos_id_ = token_to_id(*bos);
    } else if (!prefix.empty()) {
      bos_id_ = prefix.front();
      bos_token_ = id_to_token(prefix.front()).value_or("");
    }
    if (eos) {
      eos_token_ = *eos;
      eos_id_ = token_to_id(*eos);
    } else if (!suffix.empty()) {
      eos_id_ = suffix.back();
      eos_token_ = id_to_token(suffix.back()).value_or("");
    }
    add_bos_ = !prefix.empty() && bos_id_ && prefix.front() == *bos_id_;
  }

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  bool byte_level_ = false;     // the decoder chain has ByteLevel (GPT-2 byte alphabet)
  bool byte_fallback_ = false;  // ... ByteFallback (<0xHH> pieces)

  void scan_decoder(const JsonValue& d) {
    if (!d.is_object()) return;
    const std::string type = d.get_string("type", "");
    if (type == "ByteLevel") byte_level_ = true;
    if (type == "ByteFallback") byte_fallback_ = true;
    if (const JsonValue* list = d.find("decoders"); list && list->is_array())
      for (const JsonValue& x : list->as_array("decoders")) scan_decoder(x);
  }
  AddedVocab added_;
  size_t vocab_size_ = 0;
  std::optional<TokenId> bos_id_, eos_id_;
  std::string bos_token_, eos_token_;
  bool add_bos_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load_from_json(std::string_view tokenizer_json,
                                                     std::string_view tokenizer_config_json) {
  return std::make_unique<HfTokenizer>(tokenizer_json, tokenizer_config_json);
}

std::unique_ptr<Tokenizer> Tokenizer::load_from_dir(const std::string& dir) {
  std::string json = read_file(dir + "/tokenizer.json");
  std::string config;
  std::ifstream probe(dir + "/tokenizer_config.json");
  if (probe) {
    probe.close();
    config = read_file(dir + "/tokenizer_config.json");
  }
  return load_from_json(json, config);
}

}  // namespace meshlm::tok
