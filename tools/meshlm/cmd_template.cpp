// meshlm template: renders a model's chat template with the variables of a JSON file.
//   meshlm template --model DIR --context FILE [--template FILE]
// Prints the prompt byte for byte (no added newline). bos_token, eos_token, ... default from
// DIR/tokenizer_config.json as transformers does. A template that raises exits 1 with its message
// on stderr.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "command.h"
#include "core/error.h"
#include "template/chat_template.h"

namespace meshlm::cli {
namespace {

std::string read_all(const std::string& path) {
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cli", "cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int run_template(int argc, char** argv) {
  CLI::App app{"Render a model's chat template with the variables in a JSON file"};
  std::string model_dir, context_path, template_path;
  app.add_option("--model", model_dir, "model folder (tokenizer_config.json, chat_template.jinja)")
      ->required();
  app.add_option("--context", context_path, "JSON object of template variables ('-' for stdin)")
      ->required();
  app.add_option("--template", template_path, "render this template file instead of the model's");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    nlohmann::ordered_json variables;
    try {
      variables = nlohmann::ordered_json::parse(read_all(context_path));
    } catch (const nlohmann::json::exception& e) {
      throw Error("cli", context_path + ": invalid JSON: " + e.what());
    }
    if (!variables.is_object()) throw Error("cli", context_path + ": expected a JSON object");
    auto chat_template = template_path.empty()
                             ? tmpl::ChatTemplate::load(model_dir)
                             : tmpl::ChatTemplate::parse(read_all(template_path));
    std::string prompt = chat_template->render(tmpl::default_context(model_dir, variables));
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    std::fflush(stdout);
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "meshlm template: %s\n", e.what());
    return 1;
  }
}

Registrar reg("template", "render a model's chat template with JSON variables", run_template);

}  // namespace
}  // namespace meshlm::cli
