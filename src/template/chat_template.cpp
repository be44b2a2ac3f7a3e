#include "template/chat_template.h"

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "formats/gguf.h"
#include "template/builtins.h"
#include "template/interpreter.h"
#include "template/lexer.h"
#include "template/parser.h"
#include "tokenizer/gguf_tokenizer.h"

namespace meshlm::tmpl {
namespace {

namespace fs = std::filesystem;

class CompiledTemplate final : public ChatTemplate {
 public:
  explicit CompiledTemplate(std::string_view source) : source_(source) {
    program_ = tmpl::parse(tokenize(source_), source_);
  }

  std::string render(const nlohmann::json& context) const override { return render_any(context); }
  std::string render(const nlohmann::ordered_json& context) const override {
    return render_any(context);
  }
  const std::string& source() const override { return source_; }

 private:
  template <class J>
  std::string render_any(const J& context) const {
    if (!context.is_object() && !context.is_null())
      throw Error("template", "the render context must be a JSON object");
    Heap heap;
    try {
      Env* global = heap.new_env(nullptr);
      install_globals(heap, global);
      if (context.is_object()) {
        Value vars = from_json(context, heap);
        for (const auto& [key, value] : vars.object->entries) {
          if (global->has_own(key)) throw Error("template", "Variable already declared: " + key);
          global->set(key, value);
        }
      }
      Interpreter interpreter(source_, heap);
      return interpreter.run(program_, global);
    } catch (const Failure& f) {
      throw Error("template", f.message);
    }
  }

  std::string source_;
  NodeList program_;
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("template", "cannot read " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::ordered_json read_json(const fs::path& path) {
  try {
    return nlohmann::ordered_json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error("template", path.string() + ": invalid JSON: " + e.what());
  }
}

// A chat_template value: a string, or a list of {name, template} (the "default" one).
std::string pick_template(const nlohmann::ordered_json& value, const std::string& origin) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    for (const auto& entry : value) {
      // (== rather than value(): a "name" that is not a string is no match, not a json error)
      if (entry.is_object() && entry.contains("name") && entry["name"] == "default" &&
          entry.contains("template") &&
          entry["template"].is_string())
        return entry["template"].get<std::string>();
    }
    throw Error("template", origin + ": chat_template is a list with no \"default\" template");
  }
  throw Error("template", origin + ": chat_template must be a string or a list");
}

template <class J>
J with_special_tokens(const std::string& model_dir, const J& variables) {
  J out = variables.is_null() ? J::object() : variables;
  if (!out.is_object()) throw Error("template", "template variables must be a JSON object");
  nlohmann::ordered_json cfg;
  if (tok::is_gguf_model_path(model_dir)) {
    // A GGUF model: its special tokens, as the tokenizer_config.json its metadata stands for.
    auto model = formats::GgufModel::open(model_dir);
    cfg = nlohmann::ordered_json::parse(tok::gguf_tokenizer_config_json(model.metadata()));
  } else {
    fs::path config = fs::path(model_dir) / "tokenizer_config.json";
    if (!fs::exists(config)) return out;
    cfg = read_json(config);
  }
  if (!cfg.is_object()) return out;
  auto token_text = [](const nlohmann::ordered_json& t) -> std::optional<std::string> {
    if (t.is_string()) return t.get<std::string>();
    if (t.is_object() && t.contains("content") && t["content"].is_string())
      return t["content"].get<std::string>();
    return std::nullopt;
  };
  for (const char* name : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                           "cls_token", "mask_token"}) {
    if (out.contains(name) || !cfg.contains(name)) continue;
    if (auto text = token_text(cfg[name])) out[name] = *text;
  }
  if (!out.contains("additional_special_tokens") && cfg.contains("additional_special_tokens") &&
      cfg["additional_special_tokens"].is_array() && !cfg["additional_special_tokens"].empty()) {
    J list = J::array();
    for (const auto& t : cfg["additional_special_tokens"])
      if (auto text = token_text(t)) list.push_back(*text);
    out["additional_special_tokens"] = list;
  }
  return out;
}

}  // namespace

std::unique_ptr<ChatTemplate> ChatTemplate::parse(std::string_view source) {
  return std::make_unique<CompiledTemplate>(source);
}

std::unique_ptr<ChatTemplate> ChatTemplate::load_from_dir(const std::string& dir) {
  fs::path root(dir);
  if (fs::exists(root / "chat_template.jinja")) return parse(read_file(root / "chat_template.jinja"));
  if (fs::exists(root / "chat_template.json")) {
    auto j = read_json(root / "chat_template.json");
    if (j.is_object() && j.contains("chat_template"))
      return parse(pick_template(j["chat_template"], "chat_template.json"));
  }
  fs::path config = root / "tokenizer_config.json";
  if (fs::exists(config)) {
    auto j = read_json(config);
    if (j.is_object() && j.contains("chat_template") && !j["chat_template"].is_null())
      return parse(pick_template(j["chat_template"], "tokenizer_config.json"));
  }
  throw Error("template", "no chat template in " + dir +
                              " (looked for chat_template.jinja, chat_template.json and "
                              "tokenizer_config.json \"chat_template\")");
}

std::unique_ptr<ChatTemplate> ChatTemplate::load(const std::string& model_path) {
  if (!tok::is_gguf_model_path(model_path)) return load_from_dir(model_path);
  auto model = formats::GgufModel::open(model_path);
  const formats::GgufValue* source = model.metadata().find("tokenizer.chat_template");
  if (!source)
    throw Error("template", "no chat template in " + model_path +
                                " (the GGUF has no tokenizer.chat_template)");
  const std::string* text = source->is_array() ? nullptr : source->as_string();
  if (!text)
    throw Error("template", model_path + ": tokenizer.chat_template must be a string, not " +
                                source->describe());
  return parse(*text);
}

nlohmann::json default_context(const std::string& model_dir, const nlohmann::json& variables) {
  return with_special_tokens(model_dir, variables);
}

nlohmann::ordered_json default_context(const std::string& model_dir,
                                       const nlohmann::ordered_json& variables) {
  return with_special_tokens(model_dir, variables);
}

}  // namespace meshlm::tmpl
