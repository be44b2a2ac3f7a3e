// Which files of a hub repository a model needs: its config, tokenizer, chat template and
// safetensors weights; never .bin / .gguf / .pt / onnx copies or READMEs.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace meshlm::hub {

inline constexpr const char* kIndexFile = "model.safetensors.index.json";

// From the repository's file list: the metadata files present (config.json, generation_config.json,
// tokenizer.json, tokenizer_config.json, special_tokens_map.json, chat_template.jinja), then the
// weights: the index alone when there is one (its shards come from shards_from_index), else
// model.safetensors, else every top-level *.safetensors. Sorted, no duplicates. Throws
// Error("hub", ...) when there is no config.json or no safetensors weights; `repo` names the
// repository in the message.
std::vector<std::string> select_model_files(const std::vector<std::string>& siblings,
                                            const std::string& repo);

// The shard files named by a model.safetensors.index.json ("weight_map" values), checked to be
// safe names that the repository lists. Throws Error("hub", ...).
std::vector<std::string> shards_from_index(const nlohmann::json& index,
                                           const std::set<std::string>& siblings);

}  // namespace meshlm::hub
