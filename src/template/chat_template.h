// Chat templates: a Jinja-subset interpreter that renders a model's `chat_template` byte for byte
// as @huggingface/jinja (and transformers' apply_chat_template) do.
//
// Prefer the nlohmann::ordered_json overloads: JSON object key order is visible in a prompt
// (`tools | tojson`), and nlohmann::json sorts keys alphabetically.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace meshlm::tmpl {

class ChatTemplate {
 public:
  // Parses template source. Throws meshlm::Error("template", "...line L, column C...") on a syntax
  // error or an unsupported construct.
  static std::unique_ptr<ChatTemplate> parse(std::string_view source);
  // Reads the chat template of a model folder: chat_template.jinja, chat_template.json, or
  // tokenizer_config.json "chat_template" (a string, or a list of {name, template} where
  // "default" is used). Throws Error("template", ...) when the model has none.
  static std::unique_ptr<ChatTemplate> load_from_dir(const std::string& dir);
  // A model's chat template: load_from_dir for a Hugging Face folder; for a .gguf file, or a
  // folder holding a GGUF model and no tokenizer.json, its tokenizer.chat_template. Throws
  // Error("template", "no chat template in ...") when the model has none.
  static std::unique_ptr<ChatTemplate> load(const std::string& model_path);
  virtual ~ChatTemplate() = default;

  // Renders with the given variables (messages, add_generation_prompt, tools, enable_thinking,
  // bos_token, eos_token, ...). raise_exception() in the template throws
  // Error("template", message); other runtime errors throw Error("template", "error at line L,
  // column C: ...").
  virtual std::string render(const nlohmann::json& context) const = 0;
  virtual std::string render(const nlohmann::ordered_json& context) const = 0;
  // The template source as given.
  virtual const std::string& source() const = 0;
};

// The context transformers builds for apply_chat_template: `variables` plus bos_token,
// eos_token, unk_token, sep_token, pad_token, cls_token, mask_token and
// additional_special_tokens from <dir>/tokenizer_config.json when not given (strings, or
// AddedToken objects {content: ...}; null ones are left out), and strftime_now available as a
// function (always, as a global of the interpreter; it reads MESHLM_TEMPLATE_NOW, epoch seconds,
// when set, else the wall clock). For a GGUF model (ChatTemplate::load) the
// special tokens come from its tokenizer.* metadata.
nlohmann::json default_context(const std::string& model_dir, const nlohmann::json& variables);
nlohmann::ordered_json default_context(const std::string& model_dir,
                                       const nlohmann::ordered_json& variables);

}  // namespace meshlm::tmpl
