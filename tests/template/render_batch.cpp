// Conformance driver: renders a batch of {template, context} cases with meshlm's interpreter.
//   template_render_batch CASES.json RESULTS.json
// CASES.json: [{"template": "...", "context": {...}}, ...]
// RESULTS.json: [{"ok": true, "output": "..."} | {"ok": false, "error": "..."}, ...]
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "template/chat_template.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: template_render_batch CASES.json RESULTS.json\n";
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::ordered_json cases = nlohmann::ordered_json::parse(ss.str());
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  for (const auto& c : cases) {
    nlohmann::ordered_json r;
    try {
      auto t = meshlm::tmpl::ChatTemplate::parse(c.at("template").get<std::string>());
      r["ok"] = true;
      r["output"] = t->render(c.at("context"));
    } catch (const std::exception& e) {
      r = nlohmann::ordered_json{{"ok", false}, {"error", e.what()}};
    }
    results.push_back(std::move(r));
  }
  std::ofstream out(argv[2], std::ios::binary);
  out << results.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return out ? 0 : 1;
}
