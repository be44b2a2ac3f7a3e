#include "convert/source_model.h"

#include <filesystem>

#include "core/error.h"

namespace meshlm::convert {

int64_t SourceTensor::rows() const {
  int64_t r = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
  return r;
}

const formats::GgufValue* SourceModel::find(std::string_view key) const {
  for (const auto& [k, v] : metadata)
    if (k == key) return &v;
  return nullptr;
}

SourceModel open_source(const std::string& path, const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error("quantize", "'" + path + "' does not exist");
  if (fs::is_directory(path, ec) && fs::exists(fs::path(path) / "config.json", ec))
    return open_hf_source(path, name);
  return open_gguf_source(path);
}

SourceModel open_gguf_source(const std::string& path) {
  auto model = std::make_shared<formats::GgufModel>(formats::GgufModel::open(path));
  SourceModel src;
  src.path = path;
  src.keep_alive = model;
  const formats::GgufMetadata& md = model->metadata();
  for (const auto& kv : md.entries()) src.metadata.push_back(kv);
  const std::string arch = md.get_string("general.architecture");
  src.facts.arch = arch;
  src.facts.n_layers = int64_t(md.get_u32(arch + ".block_count"));
  src.facts.n_head = int64_t(md.get_u32(arch + ".attention.head_count", 0));
  src.facts.n_head_kv = int64_t(md.get_u32(arch + ".attention.head_count_kv", uint32_t(src.facts.n_head)));
  src.facts.n_expert = int64_t(md.get_u32(arch + ".expert_count", 0));
  for (const formats::GgufTensor* t : model->tensors()) {
    SourceTensor st;
    st.name = t->name;
    st.shape = t->shape();
    st.type = t->type;
    st.bytes = t->bytes();
    const uint8_t* data = t->data;
    const WeightType type = t->type;
    const int64_t cols = st.cols();
    const size_t row_bytes = formats::row_bytes(type, cols);
    st.read_rows = [data, type, cols, row_bytes](int64_t first, int64_t n, float* dst) {
      for (int64_t r = 0; r < n; ++r)
        formats::dequantize_row(type, data + size_t(first + r) * row_bytes, cols, dst + r * cols);
    };
    src.tensors.push_back(std::move(st));
  }
  return src;
}

}  // namespace meshlm::convert
