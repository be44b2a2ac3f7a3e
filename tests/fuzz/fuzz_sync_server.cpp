// libFuzzer target: the coordinator's model sync server (remote/model_sync.h, TensorServer) facing
// a hostile worker. A tiny Qwen3 model (2 layers, f32, in a temporary folder) is served; the input
// is a sequence of requests, each a frame the worker sends: a byte picks manifest-request,
// tensor-request or another type, then either fuzzed payload bytes or, structure-aware, a
// tensor-request built from (name, offset) pairs whose names are mostly the model's real tensor
// names (picked by index) with fuzzed offsets, so the fuzzer exercises the serving paths and not
// only the name check. handle() must answer or throw meshlm::Error; what it sends must be
// well-formed: a manifest that decodes, tensor-data frames inside the requested range carrying
// exactly the tensor's bytes, a tensors-done frame that counts them, or one sync-refused frame.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "../remote/sync_test_util.h"
#include "core/error.h"
#include "remote/model_sync.h"
#include "message_payloads.h"
#include "fuzz_common.h"
#include "model/safetensors.h"

using namespace meshlm::transport;
using namespace meshlm::remote;
using meshlm::fuzz::require;
using meshlm::fuzz::ScriptedConnection;
namespace fs = std::filesystem;

namespace {

struct Model {
  fs::path dir;
  std::unique_ptr<TensorServer> server;
  std::vector<std::string> names;                   // every tensor
  std::map<std::string, std::vector<uint8_t>> bytes;  // their contents
};

Model& model() {
  static Model* m = [] {
    auto* m = new Model;
    char tmpl[] = "/tmp/meshlm-fuzz-sync-XXXXXX";
    if (!mkdtemp(tmpl)) __builtin_trap();
    m->dir = tmpl;
    meshlm::remote::test::write_tiny_model(m->dir, /*hidden=*/8, /*layers=*/2, /*inter=*/16,
                                           /*vocab=*/32);
    TensorServerOptions opt;
    opt.chunk_bytes = 200;  // several tensor-data frames per tensor
    m->server = std::make_unique<TensorServer>(m->dir.string(), std::string(64, 'f'), opt);
    auto set = meshlm::model::SafetensorsSet::open_dir(m->dir.string());
    for (const auto& [name, t] : set->tensors()) {
      m->names.push_back(name);
      const uint8_t* p = set->data(t);
      m->bytes[name].assign(p, p + t.nbytes);
    }
    std::atexit([] { fs::remove_all(model().dir); });
    return m;
  }();
  return *m;
}

// Checks what the server sent in answer to one request.
void check_answer(const std::vector<ScriptedConnection::Sent>& sent, const Frame& req,
                  bool served) {
  Model& m = model();
  if (!served) {  // refused: exactly one sync-refused frame with a reason
    require(sent.size() == 1 && sent[0].type == FrameType::SyncRefused);
    require(!decode_text(sent[0].payload).empty());
    return;
  }
  if (req.type() == FrameType::ManifestRequest) {
    require(sent.size() == 1 && sent[0].type == FrameType::Manifest);
    ManifestMsg man = decode_manifest(sent[0].payload);
    for (const auto& t : man.tensors) {
      require(m.bytes.count(t.name) && m.bytes[t.name].size() == t.nbytes);
      require(t.hash == hash_bytes(m.bytes[t.name]));
    }
    return;
  }
  TensorRequestMsg tr = decode_tensor_request(req.payload);
  std::vector<uint64_t> next(tr.ranges.size());
  for (size_t i = 0; i < tr.ranges.size(); ++i) next[i] = tr.ranges[i].offset;
  uint64_t total = 0;
  require(!sent.empty() && sent.back().type == FrameType::TensorsDone);
  for (size_t k = 0; k + 1 < sent.size(); ++k) {
    require(sent[k].type == FrameType::TensorData);
    std::span<const uint8_t> data;
    TensorDataHead h = decode_tensor_data(sent[k].payload, data);
    require(h.range < tr.ranges.size() && h.offset == next[h.range]);  // in order, no gaps
    const auto& whole = m.bytes[tr.ranges[h.range].name];
    require(h.offset + data.size() <= whole.size());
    require(std::equal(data.begin(), data.end(), whole.begin() + static_cast<ptrdiff_t>(h.offset)));
    next[h.range] += data.size();
    total += data.size();
  }
  for (size_t i = 0; i < tr.ranges.size(); ++i)
    require(next[i] == m.bytes[tr.ranges[i].name].size());  // every range up to its end
  require(decode_u64(sent.back().payload) == total);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  meshlm::fuzz::quiet_logs();
  (void)model();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  Model& m = model();
  for (int n = 0; n < 8 && in.remaining_bytes() > 0; ++n) {
    const uint8_t kind = in.ConsumeIntegral<uint8_t>();
    Frame f;
    if ((kind & 3) == 3) {  // a tensor-request of mostly real names
      TensorRequestMsg tr;
      const size_t count = 1 + in.ConsumeIntegralInRange<size_t>(0, 6);
      for (size_t i = 0; i < count && in.remaining_bytes() > 0; ++i) {
        const uint8_t pick = in.ConsumeIntegral<uint8_t>();
        TensorRange r;
        r.name = pick < 0xf0 ? m.names[pick % m.names.size()] : in.ConsumeRandomLengthString(64);
        r.offset = (pick & 0x80) ? in.ConsumeIntegral<uint64_t>()
                                 : in.ConsumeIntegralInRange<uint64_t>(0, 1100);
        tr.ranges.push_back(std::move(r));
      }
      if (tr.ranges.empty()) break;
      f.header.type = static_cast<uint16_t>(FrameType::TensorRequest);
      f.payload = encode_tensor_request(tr);
    } else {
      static const FrameType kTypes[] = {FrameType::ManifestRequest, FrameType::TensorRequest,
                                         FrameType::Forward};
      f.header.type = static_cast<uint16_t>(kTypes[kind % 3]);
      std::string p = in.ConsumeRandomLengthString(256);
      f.payload.assign(p.begin(), p.end());
    }
    f.header.payload_size = f.payload.size();
    ScriptedConnection conn([](ScriptedConnection&, Frame&) { return false; });
    bool served = false;
    try {
      served = m.server->handle(conn, f, "fuzz-worker");
    } catch (const meshlm::Error&) {
      require(conn.sent.empty());  // a malformed request is refused before anything is sent
      continue;
    }
    check_answer(conn.sent, f, served);
  }
  return 0;
}
