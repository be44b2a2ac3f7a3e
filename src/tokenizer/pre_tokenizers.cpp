#include "tokenizer/pre_tokenizers.h"

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pattern.h"

namespace meshlm::tok {
namespace {

// GPT-2's pattern, used by ByteLevel when use_regex is true.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Replaces each piece by its sub-pieces [begin, end) from `split`.
template <typename SplitFn>
void split_each(std::vector<Piece>& pieces, SplitFn split) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (Piece& p : pieces) {
    for (auto [b, e] : split(p.text))
      out.push_back(Piece{p.text.substr(b, e - b), p.at_origin && b == 0});
  }
  pieces.swap(out);
}

class PatternSplit : public PreTokenizer {
 public:
  PatternSplit(Pattern p, SplitBehavior behavior, bool invert)
      : pattern_(std::move(p)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](const std::string& s) {
      std::vector<Span> spans = pattern_.find_matches(s);
      if (invert_)
        for (Span& sp : spans) sp.match = !sp.match;
      return split_spans(std::move(spans), behavior_);
    });
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPre : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space),
        regex_(use_regex
                   ? std::make_unique<PatternSplit>(Pattern::from_json(regex_json(), "ByteLevel"),
                                                    SplitBehavior::kIsolated, false)
                   : nullptr) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_)
      for (Piece& p : pieces)
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(p.text.begin(), ' ');
    if (regex_) regex_->pre_tokenize(pieces);
    std::string mapped;
    for (Piece& p : pieces) {
      mapped.clear();
      byte_level_encode(p.text, mapped);
      p.text.swap(mapped);
    }
  }

 private:
  static JsonValue regex_json() {
    JsonValue v;
    v.type = JsonValue::Type::kObject;
    JsonValue r;
    r.type = JsonValue::Type::kString;
    r.str = kGpt2Pattern;
    v.obj.push_back(JsonMember{"Regex", std::move(r)});
    return v;
  }
  bool add_prefix_space_;
  std::unique_ptr<PatternSplit> regex_;
};

class Metaspace : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  Metaspace(std::string replacement, Prepend scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (Piece& p : pieces) {
      std::string out;
      out.reserve(p.text.size() + 8);
      for (char c : p.text) {
        if (c == ' ')
          out += replacement_;
        else
          out.push_back(c);
      }
      bool starts = out.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == Prepend::kAlways || (scheme_ == Prepend::kFirst && p.at_origin)))
        out.insert(0, replacement_);
      p.text.swap(out);
    }
    if (!split_) return;
    Pattern pat = Pattern::literal(replacement_);
    split_each(pieces, [&](const std::string& s) {
      return split_spans(pat.find_matches(s), SplitBehavior::kMergedWithNext);
    });
  }

 private:
  std::string replacement_;
  Prepend scheme_;
  bool split_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> items) : items_(std::move(items)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (auto& p : items_) p->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> items_;
};

std::unique_ptr<PreTokenizer> regex_split(const char* re, SplitBehavior b, bool invert) {
  JsonValue v;
  v.type = JsonValue::Type::kObject;
  JsonValue r;
  r.type = JsonValue::Type::kString;
  r.str = re;
  v.obj.push_back(JsonMember{"Regex", std::move(r)});
  return std::make_unique<PatternSplit>(Pattern::from_json(v, "pre_tokenizer"), b, invert);
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const JsonValue& v) {
  if (v.is_null()) return nullptr;
  if (!v.is_object()) throw Error("tokenizer", "pre_tokenizer must be an object");
  const std::string type = v.get_string("type", "");
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPre>(v.get_bool("add_prefix_space", true),
                                          v.get_bool("use_regex", true));
  if (type == "Split") {
    const JsonValue* p = v.find("pattern");
    if (!p) throw Error("tokenizer", "Split pre-tokenizer without pattern");
    return std::make_unique<PatternSplit>(Pattern::from_json(*p, "Split.pattern"),
                                          split_behavior_from_string(v.get_string("behavior", "")),
                                          v.get_bool("invert", false));
  }
  if (type == "Digits")
    return regex_split(R"(\p{N})",
                       v.get_bool("individual_digits", false) ? SplitBehavior::kIsolated
                                                              : SplitBehavior::kContiguous,
                       false);
  if (type == "Whitespace") return regex_split(R"(\w+|[^\w\s]+)", SplitBehavior::kRemoved, true);
  if (type == "WhitespaceSplit") return regex_split(R"(\s+)", SplitBehavior::kRemoved, false);
  if (type == "Metaspace") {
    std::string replacement = v.get_string("replacement", "\xE2\x96\x81");
    if (replacement.empty() || utf8_char_len(replacement[0]) != replacement.size())
      throw Error("tokenizer", "Metaspace replacement must be one character");
    Metaspace::Prepend scheme = Metaspace::Prepend::kAlways;
    if (const JsonValue* s = v.find("prepend_scheme"); s && !s->is_null()) {
      const std::string& name = s->as_string("prepend_scheme");
      if (name == "always")
        scheme = Metaspace::Prepend::kAlways;
      else if (name == "first")
        scheme = Metaspace::Prepend::kFirst;
      else if (name == "never")
        scheme = Metaspace::Prepend::kNever;
      else
        throw Error("tokenizer", "unknown Metaspace prepend_scheme '" + name + "'");
    } else if (!v.get_bool("add_prefix_space", true)) {
      scheme = Metaspace::Prepend::kNever;
    }
    return std::make_unique<Metaspace>(replacement, scheme, v.get_bool("split", true));
  }
  if (type == "Sequence") {
    const JsonValue* list = v.find("pretokenizers");
    if (!list) throw Error("tokenizer", "Sequence pre-tokenizer without 'pretokenizers'");
    std::vector<std::unique_ptr<PreTokenizer>> items;
    for (const JsonValue& item : list->as_array("pretokenizers"))
      if (auto p = make_pre_tokenizer(item)) items.push_back(std::move(p));
    return std::make_unique<Sequence>(std::move(items));
  }
  throw Error("tokenizer", "unsupported pre_tokenizer type '" + type + "'");
}

}  // namespace meshlm::tok
