#include "hub/file_selection.h"

#include <algorithm>

#include "core/error.h"
#include "hub/cache_layout.h"

namespace meshlm::hub {

namespace {

constexpr const char* kMetaFiles[] = {
    "config.json",           "generation_config.json",  "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<std::string> select_model_files(const std::vector<std::string>& siblings,
                                            const std::string& repo) {
  std::set<std::string> have(siblings.begin(), siblings.end());
  std::set<std::string> out;
  for (const char* f : kMetaFiles)
    if (have.count(f)) out.insert(f);
  if (!have.count("config.json"))
    throw Error("hub", repo + " has no config.json: not a Hugging Face transformers model");
  if (have.count(kIndexFile)) {
    out.insert(kIndexFile);
  } else if (have.count("model.safetensors")) {
    out.insert("model.safetensors");
  } else {
    for (const auto& f : have)
      if (f.find('/') == std::string::npos && ends_with(f, ".safetensors")) out.insert(f);
  }
  bool has_weights = std::any_of(out.begin(), out.end(), [](const std::string& f) {
    return ends_with(f, ".safetensors") || f == kIndexFile;
  });
  if (!has_weights) {
    std::string others;
    for (const auto& f : have)
      if (ends_with(f, ".bin") || ends_with(f, ".gguf") || ends_with(f, ".pt") ||
          ends_with(f, ".pth") || ends_with(f, ".onnx"))
        others += (others.empty() ? "" : ", ") + f;
    throw Error("hub", repo + " has no .safetensors weights" +
                           (others.empty() ? std::string() : " (only " + others + ")") +
                           "; meshlm reads safetensors only");
  }
  return {out.begin(), out.end()};
}

std::vector<std::string> shards_from_index(const nlohmann::json& index,
                                           const std::set<std::string>& siblings) {
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw Error("hub", std::string(kIndexFile) + " has no \"weight_map\" object");
  std::set<std::string> shards;
  for (const auto& [tensor, file] : index["weight_map"].items()) {
    if (!file.is_string())
      throw Error("hub",
                  std::string(kIndexFile) + ": weight_map[\"" + tensor + "\"] is not a string");
    std::string name = file.get<std::string>();
    validate_repo_file_name(name, kIndexFile);
    if (!siblings.count(name))
      throw Error("hub", std::string(kIndexFile) + " names shard '" + name +
                             "' which the repository does not have");
    shards.insert(name);
  }
  if (shards.empty()) throw Error("hub", std::string(kIndexFile) + " lists no shards");
  return {shards.begin(), shards.end()};
}

}  // namespace meshlm::hub
