#include "tokenizer/decoders.h"

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pattern.h"

namespace meshlm::tok {
namespace {

class ByteLevelDec : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      size_t mark = bytes.size();
      bool ok = true;
      for (size_t i = 0; i < t.size();) {
        int b = byte_level_byte(utf8_next(t, i));
        if (b < 0) {
          ok = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
      }
      if (!ok) {  // a token outside the byte alphabet stands for its own UTF-8
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class ByteFallbackDec : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&]() {
      if (pending.empty()) return;
      if (utf8_is_valid(pending))
        out.push_back(pending);
      else
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back(kReplacementUtf8);
      pending.clear();
    };
    for (std::string& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        auto hex = [](char c) {
          return c >= '0' && c <= '9'   ? c - '0'
                 : c >= 'a' && c <= 'f' ? c - 'a' + 10
                 : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                        : -1;
        };
        int hi = hex(t[3]), lo = hex(t[4]);
        if (hi >= 0 && lo >= 0) byte = hi * 16 + lo;
      }
      if (byte >= 0) {
        pending.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens.swap(out);
  }
};

class FuseDec : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDec : public Decoder {
 public:
  StripDec(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      std::vector<size_t> starts;  // byte offset of each character
      for (size_t i = 0; i < t.size(); i += utf8_char_len(static_cast<unsigned char>(t[i])))
        starts.push_back(i);
      auto char_at = [&](size_t k) {
        size_t end = k + 1 < starts.size() ? starts[k + 1] : t.size();
        return std::string_view(t).substr(starts[k], end - starts[k]);
      };
      size_t n = starts.size(), start_cut = 0, stop_cut = n;
      for (size_t k = 0; k < std::min(start_, n); ++k) {
        if (char_at(k) != content_) break;
        start_cut = k + 1;
      }
      for (size_t k = 0; k < std::min(stop_, n); ++k) {
        size_t index = n - k - 1;
        if (char_at(index) != content_) break;
        stop_cut = index;
      }
      if (stop_cut < start_cut) stop_cut = start_cut;
      size_t b = start_cut < n ? starts[start_cut] : t.size();
      size_t e = stop_cut < n ? starts[stop_cut] : t.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class ReplaceDec : public Decoder {
 public:
  ReplaceDec(Pattern p, std::string content)
      : pattern_(std::move(p)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      std::string out;
      for (const Span& sp : pattern_.find_matches(t)) {
        if (sp.match)
          out += content_;
        else
          out.append(t, sp.begin, sp.end - sp.begin);
      }
      t.swap(out);
    }
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class MetaspaceDec : public Decoder {
 public:
  MetaspaceDec(std::string replacement, bool prepend)
      : replacement_(std::move(replacement)), prepend_(prepend) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (size_t k = 0; k < t.size();) {
        if (t.compare(k, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && prepend_)) out.push_back(' ');
          k += replacement_.size();
        } else {
          out.push_back(t[k++]);
        }
      }
      tokens[i].swap(out);
    }
  }

 private:
  std::string replacement_;
  bool prepend_;
};

class BpeDec : public Decoder {
 public:
  explicit BpeDec(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      const std::string rep = i + 1 == tokens.size() ? "" : " ";
      for (size_t k = 0; k < t.size();) {
        if (!suffix_.empty() && t.compare(k, suffix_.size(), suffix_) == 0) {
          out += rep;
          k += suffix_.size();
        } else {
          out.push_back(t[k++]);
        }
      }
      tokens[i].swap(out);
    }
  }

 private:
  std::string suffix_;
};

class SequenceDec : public Decoder {
 public:
  explicit SequenceDec(std::vector<std::unique_ptr<Decoder>> items) : items_(std::move(items)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& d : items_) d->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> items_;
};

size_t non_negative(const JsonValue& v, std::string_view key) {
  int64_t n = v.get_int(key, 0);
  if (n < 0 || n > 1'000'000) throw Error("tokenizer", std::string(key) + " out of range");
  return static_cast<size_t>(n);
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const JsonValue& v) {
  if (v.is_null()) return nullptr;
  if (!v.is_object()) throw Error("tokenizer", "decoder must be an object");
  const std::string type = v.get_string("type", "");
  if (type == "ByteLevel") return std::make_unique<ByteLevelDec>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDec>();
  if (type == "Fuse") return std::make_unique<FuseDec>();
  if (type == "Strip") {
    std::string content = v.get_string("content", " ");
    if (content.empty() || utf8_char_len(content[0]) != content.size())
      throw Error("tokenizer", "Strip decoder content must be one character");
    return std::make_unique<StripDec>(content, non_negative(v, "start"), non_negative(v, "stop"));
  }
  if (type == "Replace") {
    const JsonValue* p = v.find("pattern");
    if (!p) throw Error("tokenizer", "Replace decoder without pattern");
    return std::make_unique<ReplaceDec>(Pattern::from_json(*p, "Replace.pattern"),
                                        v.get_string("content", ""));
  }
  if (type == "Metaspace") {
    std::string replacement = v.get_string("replacement", "\xE2\x96\x81");
    if (replacement.empty()) throw Error("tokenizer", "Metaspace replacement is empty");
    bool prepend = true;
    if (const JsonValue* s = v.find("prepend_scheme"); s && !s->is_null())
      prepend = s->as_string("prepend_scheme") != "never";
    else
      prepend = v.get_bool("add_prefix_space", true);
    return std::make_unique<MetaspaceDec>(replacement, prepend);
  }
  if (type == "BPEDecoder") return std::make_unique<BpeDec>(v.get_string("suffix", "</w>"));
  if (type == "Sequence") {
    const JsonValue* list = v.find("decoders");
    if (!list) throw Error("tokenizer", "Sequence decoder without 'decoders'");
    std::vector<std::unique_ptr<Decoder>> items;
    for (const JsonValue& item : list->as_array("decoders"))
      if (auto d = make_decoder(item)) items.push_back(std::move(d));
    return std::make_unique<SequenceDec>(std::move(items));
  }
  throw Error("tokenizer", "unsupported decoder type '" + type + "'");
}

}  // namespace meshlm::tok
