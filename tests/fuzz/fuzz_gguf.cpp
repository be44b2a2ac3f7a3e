// libFuzzer target: GGUF files (formats/gguf.h), from downloaded model files.
// Byte 0 picks the view of the rest of the input:
//   odd:  the bytes are the whole file;
//   even: structure-aware: byte 1 is the tensor count, byte 2 the metadata count, and the harness
//         writes "GGUF", version 3 and those counts in front of the bytes from 3 on, so every
//         input gets past the magic, version and count checks to the pairs and tensor infos.
// GgufFile::parse must return a file or throw Error("gguf", ...). A returned file's tensors lie
// inside it at aligned offsets, hold tensor_bytes(type, shape) bytes, do not overlap and have
// unique names; every metadata accessor on every key returns or throws Error("gguf", ...); the
// file as a one-part model (split.* checks) opens or throws Error("gguf", ...).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "fuzz_common.h"

using meshlm::fuzz::require;
using namespace meshlm::formats;

namespace {

void put(std::vector<uint8_t>& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(uint8_t(v >> (8 * i)));
}

template <typename F>
void expect_value_or_gguf_error(F&& f) {
  try {
    f();
  } catch (const meshlm::Error& e) {
    require(e.component() == "gguf");
  }
}

void check_file(const GgufFile& f, std::span<const uint8_t> file) {
  require(f.alignment() != 0 && (f.alignment() & (f.alignment() - 1)) == 0);
  require(f.data_offset() % f.alignment() == 0);
  std::set<std::string> names;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const GgufTensor& t : f.tensors()) {
    require(names.insert(t.name).second);
    require(f.find_tensor(t.name) == &t);
    require(t.dims.size() <= GgufFile::kMaxDims);
    require(t.offset % f.alignment() == 0);
    require(t.file_offset == f.data_offset() + t.offset);
    require(t.file_offset <= file.size() && t.nbytes <= file.size() - t.file_offset);
    require(t.data == file.data() + t.file_offset);
    require(tensor_bytes(t.type, t.shape()) == t.nbytes);
    for (int64_t d : t.dims) require(d >= 0);
    if (t.nbytes) spans.emplace_back(t.offset, t.nbytes);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) require(spans[i].first >= spans[i - 1].first + spans[i - 1].second);

  const GgufMetadata& m = f.metadata();
  for (const auto& entry : m.entries()) {
    // Named references, not a structured binding: lambdas capture bindings only from clang 16.
    const std::string& key = entry.first;
    const GgufValue& v = entry.second;
    require(m.find(key) == &v);
    require(v.is_array() || v.size() == 1);
    // Every element reads as exactly its own kind.
    for (size_t i = 0; i < std::min<size_t>(v.size(), 4); ++i)
      require(v.as_i64(i) || v.as_u64(i) || v.as_f64(i) || v.as_bool(i) || v.as_string(i));
    (void)v.describe();
    expect_value_or_gguf_error([&] { m.get_u32(key); });
    expect_value_or_gguf_error([&] { m.get_i64(key, 0); });
    expect_value_or_gguf_error([&] { m.get_u64(key); });
    expect_value_or_gguf_error([&] { m.get_f32(key); });
    expect_value_or_gguf_error([&] { m.get_bool(key); });
    expect_value_or_gguf_error([&] { m.get_string(key); });
    expect_value_or_gguf_error([&] { m.get_string_array(key); });
    expect_value_or_gguf_error([&] { m.get_int_array(key); });
    expect_value_or_gguf_error([&] { m.get_float_array(key); });
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::vector<uint8_t> file;
  if (data[0] & 1) {
    file.assign(data + 1, data + size);
  } else {
    if (size < 3) return 0;
    file = {'G', 'G', 'U', 'F'};
    put(file, 3, 4);
    put(file, data[1], 8);
    put(file, data[2], 8);
    file.insert(file.end(), data + 3, data + size);
  }
  try {
    GgufFile f = GgufFile::parse(file, "fuzz.gguf");
    check_file(f, file);
    std::vector<GgufFile> parts;
    parts.push_back(std::move(f));
    expect_value_or_gguf_error([&] {
      GgufModel model = GgufModel::from_parts(std::move(parts));
      for (const GgufTensor* t : model.tensors()) require(model.find_tensor(t->name) == t);
    });
  } catch (const meshlm::Error& e) {
    require(e.component() == "gguf");
  }
  return 0;
}
