// libFuzzer target for the model sync decoders (manifest request, manifest, tensor request,
// tensor data, load with its sync flag): any bytes must decode or throw meshlm::Error, never
// crash, hang or read out of bounds; what decodes re-encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "transport/messages.h"

using namespace meshlm::transport;

namespace {

void same(const std::vector<uint8_t>& again, std::span<const uint8_t> p) {
  if (again.size() != p.size() || !std::equal(again.begin(), again.end(), p.begin())) {
    __builtin_trap();  // encodings are canonical
  }
}

void decode_one(uint8_t which, std::span<const uint8_t> p) {
  switch (which % 5) {
    case 0:
      same(encode_manifest_request(decode_manifest_request(p)), p);
      break;
    case 1:
      same(encode_manifest(decode_manifest(p)), p);
      break;
    case 2:
      same(encode_tensor_request(decode_tensor_request(p)), p);
      break;
    case 3: {
      std::span<const uint8_t> data;
      TensorDataHead h = decode_tensor_data(p, data);
      if (data.empty() || data.data() + data.size() != p.data() + p.size()) __builtin_trap();
      auto head = encode_tensor_data_head(h);
      if (head.size() + data.size() != p.size()) __builtin_trap();
      break;
    }
    default:
      same(encode_load(decode_load(p)), p);
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  try {
    decode_one(data[0], {data + 1, size - 1});
  } catch (const meshlm::Error&) {
  }
  return 0;
}
