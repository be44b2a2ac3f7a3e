#include "tokenizer/post_processors.h"

#include "core/error.h"

namespace meshlm::tok {
namespace {

// [prefix] A [suffix]: covers TemplateProcessing (single), Bert and Roberta processing.
class Wrap : public PostProcessor {
 public:
  Wrap(std::vector<TokenId> prefix, std::vector<TokenId> suffix)
      : prefix_(std::move(prefix)), suffix_(std::move(suffix)) {}
  void process(std::vector<TokenId>& ids) const override {
    ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
    ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  }
  std::vector<TokenId> prefix() const override { return prefix_; }
  std::vector<TokenId> suffix() const override { return suffix_; }

 private:
  std::vector<TokenId> prefix_, suffix_;
};

class Sequence : public PostProcessor {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PostProcessor>> items) : items_(std::move(items)) {}
  void process(std::vector<TokenId>& ids) const override {
    for (auto& p : items_) p->process(ids);
  }
  std::vector<TokenId> prefix() const override {
    std::vector<TokenId> out;
    for (auto it = items_.rbegin(); it != items_.rend(); ++it) {
      auto p = (*it)->prefix();
      out.insert(out.end(), p.begin(), p.end());
    }
    return out;
  }
  std::vector<TokenId> suffix() const override {
    std::vector<TokenId> out;
    for (auto& p : items_) {
      auto s = p->suffix();
      out.insert(out.end(), s.begin(), s.end());
    }
    return out;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> items_;
};

TokenId pair_id(const JsonValue& v, const char* what) {
  const auto& arr = v.as_array(what);
  if (arr.size() != 2) throw Error("tokenizer", std::string(what) + " must be [token, id]");
  int64_t id = arr[1].as_int(what);
  if (id < 0 || id > INT32_MAX) throw Error("tokenizer", std::string(what) + " id out of range");
  return static_cast<TokenId>(id);
}

std::unique_ptr<PostProcessor> make_template(const JsonValue& v) {
  const JsonValue* single = v.find("single");
  if (!single) throw Error("tokenizer", "TemplateProcessing without 'single'");
  const JsonValue* specials = v.find("special_tokens");
  std::vector<TokenId> prefix, suffix;
  bool seen_sequence = false;
  for (const JsonValue& item : single->as_array("single")) {
    if (const JsonValue* st = item.find("SpecialToken")) {
      std::string name = st->get_string("id", "");
      const JsonValue* def = specials ? specials->find(name) : nullptr;
      if (!def) throw Error("tokenizer", "template special token '" + name + "' not defined");
      const JsonValue* ids = def->find("ids");
      if (!ids) throw Error("tokenizer", "template special token '" + name + "' without ids");
      for (const JsonValue& id : ids->as_array("ids")) {
        int64_t n = id.as_int("special token id");
        if (n < 0 || n > INT32_MAX) throw Error("tokenizer", "special token id out of range");
        (seen_sequence ? suffix : prefix).push_back(static_cast<TokenId>(n));
      }
    } else if (const JsonValue* seq = item.find("Sequence")) {
      if (seen_sequence) throw Error("tokenizer", "single template with two sequences");
      if (seq->get_string("id", "A") != "A")
        throw Error("tokenizer", "single template must use sequence A");
      seen_sequence = true;
    } else {
      throw Error("tokenizer", "bad template item");
    }
  }
  if (!seen_sequence) throw Error("tokenizer", "single template without sequence");
  return std::make_unique<Wrap>(std::move(prefix), std::move(suffix));
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const JsonValue& v) {
  if (v.is_null()) return nullptr;
  if (!v.is_object()) throw Error("tokenizer", "post_processor must be an object");
  const std::string type = v.get_string("type", "");
  if (type == "TemplateProcessing") return make_template(v);
  if (type == "ByteLevel")
    return std::make_unique<Wrap>(std::vector<TokenId>{}, std::vector<TokenId>{});
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    const JsonValue* cls = v.find("cls");
    const JsonValue* sep = v.find("sep");
    if (!cls || !sep) throw Error("tokenizer", type + " without cls/sep");
    return std::make_unique<Wrap>(std::vector<TokenId>{pair_id(*cls, "cls")},
                                  std::vector<TokenId>{pair_id(*sep, "sep")});
  }
  if (type == "Sequence") {
    const JsonValue* list = v.find("processors");
    if (!list) throw Error("tokenizer", "Sequence post_processor without 'processors'");
    std::vector<std::unique_ptr<PostProcessor>> items;
    for (const JsonValue& item : list->as_array("processors"))
      if (auto p = make_post_processor(item)) items.push_back(std::move(p));
    return std::make_unique<Sequence>(std::move(items));
  }
  throw Error("tokenizer", "unsupported post_processor type '" + type + "'");
}

}  // namespace meshlm::tok
