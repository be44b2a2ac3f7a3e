// libFuzzer target: safetensors headers (model/safetensors.h), from downloaded model files.
// Byte 0 picks the view of the rest of the input:
//   odd:  the bytes are the whole file (8-byte little-endian header length, JSON, data);
//   even: structure-aware: the bytes up to the first NUL are the JSON header, what follows is the
//         data section, and the harness writes the matching 8-byte length in front, so every
//         input gets past the length check to the JSON, dtypes, shapes and data_offsets.
// parse_safetensors_header must return tensors or throw Error("safetensors", ...). Returned
// tensors lie inside the data section, do not overlap, and hold shape x dtype bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "fuzz_common.h"
#include "model/safetensors.h"

using meshlm::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::vector<uint8_t> file;
  size_t data_start = 0;
  if (data[0] & 1) {
    file.assign(data + 1, data + size);
  } else {
    std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    size_t nul = rest.find('\0');
    std::string_view json = rest.substr(0, nul);
    std::string_view bytes = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
    uint64_t n = json.size();
    for (int i = 0; i < 8; ++i) file.push_back(static_cast<uint8_t>(n >> (8 * i)));
    file.insert(file.end(), json.begin(), json.end());
    file.insert(file.end(), bytes.begin(), bytes.end());
    data_start = 8 + json.size();
  }
  try {
    auto tensors = meshlm::model::parse_safetensors_header(file.data(), file.size(), "fuzz", 0);
    if (data[0] & 1) {  // the data section starts after the header the file declares
      uint64_t n = 0;
      for (int i = 7; i >= 0; --i) n = (n << 8) | file[size_t(i)];
      data_start = 8 + static_cast<size_t>(n);
    }
    std::vector<std::pair<size_t, size_t>> spans;
    for (const auto& t : tensors) {
      require(t.offset >= data_start && t.offset <= file.size() && t.nbytes <= file.size() - t.offset);
      uint64_t elements = 1;
      for (int64_t d : t.shape) {
        require(d >= 0);
        elements *= static_cast<uint64_t>(d);
      }
      if (t.dtype_supported) require(t.nbytes == meshlm::formats::tensor_bytes(t.dtype, t.shape));
      spans.emplace_back(t.offset, t.nbytes);
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i)
      require(spans[i].first >= spans[i - 1].first + spans[i - 1].second);
  } catch (const meshlm::Error& e) {
    require(e.component() == "safetensors");
  }
  return 0;
}
