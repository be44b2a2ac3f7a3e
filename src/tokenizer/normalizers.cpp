#include "tokenizer/normalizers.h"

#include <vector>

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/pattern.h"
#include "tokenizer/unicode_norm.h"

namespace meshlm::tok {

bool is_unicode_whitespace(char32_t c) {
  return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

namespace {

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormForm form) : form_(form) {}
  std::string normalize(std::string s) const override { return unicode_normalize(s, form_); }

 private:
  NormForm form_;
};

class Lowercase : public Normalizer {
 public:
  std::string normalize(std::string s) const override { return unicode_lowercase(s); }
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  std::string normalize(std::string s) const override { return s.empty() ? s : prepend_ + s; }

 private:
  std::string prepend_;
};

class Replace : public Normalizer {
 public:
  Replace(Pattern p, std::string content) : pattern_(std::move(p)), content_(std::move(content)) {}
  std::string normalize(std::string s) const override {
    std::string out;
    out.reserve(s.size());
    for (const Span& sp : pattern_.find_matches(s)) {
      if (sp.match)
        out += content_;
      else
        out.append(s, sp.begin, sp.end - sp.begin);
    }
    return out;
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        size_t i = b;
        if (!is_unicode_whitespace(utf8_next(s, i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!is_unicode_whitespace(utf8_next(s, i))) break;
        e = start;
      }
    }
    return s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> items) : items_(std::move(items)) {}
  std::string normalize(std::string s) const override {
    for (auto& n : items_) s = n->normalize(std::move(s));
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> items_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const JsonValue& v) {
  if (v.is_null()) return nullptr;
  if (!v.is_object()) throw Error("tokenizer", "normalizer must be an object");
  const std::string type = v.get_string("type", "");
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormForm::kNFC);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormForm::kNFD);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormForm::kNFKC);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormForm::kNFKD);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Prepend") return std::make_unique<Prepend>(v.get_string("prepend", ""));
  if (type == "Strip")
    return std::make_unique<Strip>(v.get_bool("strip_left", true), v.get_bool("strip_right", true));
  if (type == "Replace") {
    const JsonValue* p = v.find("pattern");
    if (!p) throw Error("tokenizer", "Replace normalizer without pattern");
    return std::make_unique<Replace>(Pattern::from_json(*p, "Replace.pattern"),
                                     v.get_string("content", ""));
  }
  if (type == "Sequence") {
    const JsonValue* list = v.find("normalizers");
    if (!list) throw Error("tokenizer", "Sequence normalizer without 'normalizers'");
    std::vector<std::unique_ptr<Normalizer>> items;
    for (const JsonValue& item : list->as_array("normalizers"))
      if (auto n = make_normalizer(item)) items.push_back(std::move(n));
    return std::make_unique<Sequence>(std::move(items));
  }
  throw Error("tokenizer", "unsupported normalizer type '" + type + "'");
}

}  // namespace meshlm::tok
