#include "model/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"

namespace meshlm::model {

namespace {

constexpr size_t kMaxHeaderBytes = size_t(100) << 20;  // the format's own limit is 100 MB

size_t element_size(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
      {"I8", 1},  {"U8", 1},  {"U16", 2}, {"U32", 4},  {"U64", 8}, {"BOOL", 1}, {"F8_E4M3", 1},
      {"F8_E5M2", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

}  // namespace

std::vector<TensorInfo> parse_safetensors_header(const uint8_t* data, size_t size,
                                                 const std::string& path, size_t file_index) {
  auto fail = [&](const std::string& msg) { return Error("safetensors", "'" + path + "': " + msg); };
  if (size < 8) throw fail("file is " + std::to_string(size) + " bytes, too short for a header");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > size - 8)
    throw fail("header length " + std::to_string(header_len) + " extends past the end of the file (" +
               std::to_string(size) + " bytes): truncated or corrupt");
  if (header_len > kMaxHeaderBytes) throw fail("header length " + std::to_string(header_len) + " is too large");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(data + 8, data + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw fail("header is not a JSON object");
  const size_t data_start = 8 + size_t(header_len);
  const size_t data_size = size - data_start;
  std::vector<TensorInfo> out;
  for (auto& [name, t] : header.items()) {
    if (name == "__metadata__") continue;
    // A named reference, not the structured binding: lambdas capture bindings only from clang 16.
    const std::string& tensor_name = name;
    auto tfail = [&](const std::string& msg) { return fail("tensor '" + tensor_name + "': " + msg); };
    if (!t.is_object() || !t.contains("dtype") || !t["dtype"].is_string() || !t.contains("shape") ||
        !t["shape"].is_array() || !t.contains("data_offsets") || !t["data_offsets"].is_array() ||
        t["data_offsets"].size() != 2)
      throw tfail("malformed entry (needs dtype, shape, data_offsets)");
    TensorInfo info;
    info.name = name;
    info.file_index = file_index;
    info.dtype_name = t["dtype"].get<std::string>();
    size_t esize = element_size(info.dtype_name);
    if (esize == 0) throw tfail("unknown dtype '" + info.dtype_name + "'");
    if (auto type = formats::from_name(info.dtype_name)) {
      info.dtype = *type;
      info.dtype_supported = true;
    }
    size_t count = 1;
    for (auto& d : t["shape"]) {
      if (!d.is_number_unsigned()) throw tfail("shape has a non-integer or negative dimension");
      uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && count > (uint64_t(1) << 50) / dim) throw tfail("shape is too large");
      count *= size_t(dim);
      info.shape.push_back(int64_t(dim));
    }
    const auto& off = t["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw tfail("data_offsets must be non-negative integers");
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end) throw tfail("data_offsets are reversed");
    if (end > data_size)
      throw tfail("data extends past the end of the file (ends at " + std::to_string(end) +
                  ", data section is " + std::to_string(data_size) + " bytes): truncated or corrupt");
    if (end - begin != count * esize)
      throw tfail("data_offsets span " + std::to_string(end - begin) + " bytes but shape x dtype needs " +
                  std::to_string(count * esize));
    info.offset = data_start + size_t(begin);
    info.nbytes = size_t(end - begin);
    out.push_back(std::move(info));
  }
  // Tensors must not overlap.
  std::vector<const TensorInfo*> sorted;
  for (auto& t : out) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->offset < sorted[i - 1]->offset + sorted[i - 1]->nbytes)
      throw fail("tensors '" + sorted[i - 1]->name + "' and '" + sorted[i]->name + "' overlap");
  return out;
}

std::unique_ptr<SafetensorsSet> SafetensorsSet::open_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  auto set = std::make_unique<SafetensorsSet>();
  std::vector<std::string> files;
  fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    nlohmann::json j = read_json_file(index.string(), "safetensors");
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error("safetensors", "'" + index.string() + "' has no weight_map object");
    std::set<std::string> unique;
    for (auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) throw Error("safetensors", "weight_map entry for '" + name + "' is not a string");
      std::string fname = file.get<std::string>();
      if (fname.find('/') != std::string::npos || fname.find("..") != std::string::npos)
        throw Error("safetensors", "weight_map names a file outside the model folder: '" + fname + "'");
      unique.insert(fname);
    }
    files.assign(unique.begin(), unique.end());
  } else if (fs::exists(fs::path(dir) / "model.safetensors")) {
    files.push_back("model.safetensors");
  } else {
    throw Error("safetensors", "no model.safetensors or model.safetensors.index.json in '" + dir + "'");
  }
  for (size_t i = 0; i < files.size(); ++i) {
    std::string path = (fs::path(dir) / files[i]).string();
    if (!fs::exists(path)) throw Error("safetensors", "missing file '" + path + "'");
    set->files_.emplace_back(path);
    auto& mf = set->files_.back();
    for (auto& t : parse_safetensors_header(mf.data(), mf.size(), path, i)) {
      std::string name = t.name;
      if (!set->tensors_.emplace(name, std::move(t)).second)
        throw Error("safetensors", "tensor '" + name + "' appears in more than one file");
    }
  }
  return set;
}

const TensorInfo& SafetensorsSet::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error("safetensors", "missing tensor '" + name + "'");
  return it->second;
}

}  // namespace meshlm::model
