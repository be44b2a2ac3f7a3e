// Model sync of quantized models, in-process: a GGUF file (Q4_K / Q6_K / Q8_0 blocks and a
// rope_freqs tensor the schema does not name) and an MLX 4-bit folder (U32 codes + BF16 scales and
// biases) travel as stored. A worker with an empty cache receives exactly the stored bytes of its
// layers and gives the coordinator's logits bit for bit; a second start sends nothing; an
// interrupted transfer resumes at the byte it stopped; a damaged tensor in the cache is fetched
// again alone; damaged, truncated or inconsistent data fails the load with a clear error and the
// worker keeps serving.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "convert/mlx_export.h"
#include "formats/gguf.h"
#include "model/model_files.h"
#include "model/safetensors.h"
#include "remote/fingerprint.h"
#include "remote/model_sync.h"
#include "remote/remote_pipeline.h"
#include "runtime/pipeline.h"
#include "prompt_output.h"
#include "sync_test_util.h"
#include "transport/handshake.h"
#include "transport/tcp_transport.h"

namespace meshlm::remote {

using namespace transport;
namespace {

namespace fs = std::filesystem;
const std::string kSecret = "quant-sync-secret";
constexpr int64_t kLayers = 4, kVocab = 256;

fs::path test_root() {
  static fs::path root =
      fs::temp_directory_path() / ("meshlm_quant_sync_test_" + std::to_string(getpid()));
  return root;
}

// The model a test parameter names.
fs::path model_path(const std::string& format) {
  return format == "gguf" ? test_root() / "model.gguf" : test_root() / "mlx4";
}

const std::vector<int32_t> kPrompt = {1, 17, 200, 42, 7, 99, 250, 3};

// Stored bytes of the tensors a stage holding layers [begin, end) of the 4-layer model needs,
// counted from the files alone (names by their spelling, not through the schema).
uint64_t stored_stage_bytes(const std::string& format, int64_t begin, int64_t end) {
  uint64_t total = 0;
  auto layer_in = [&](const std::string& n, const std::string& prefix) {
    if (n.rfind(prefix, 0) != 0) return false;
    const int64_t l = std::stoll(n.substr(prefix.size()));
    return begin <= l && l < end;
  };
  if (format == "gguf") {
    auto m = formats::GgufModel::open(model_path(format).string());
    for (const formats::GgufTensor* t : m.tensors()) {
      const std::string& n = t->name;
      const bool want = layer_in(n, "blk.") || n == "rope_freqs.weight" ||
                        (begin == 0 && n == "token_embd.weight") ||
                        (end == kLayers && (n == "output_norm.weight" || n == "output.weight"));
      if (want) total += t->nbytes;
    }
    return total;
  }
  auto set = model::SafetensorsSet::open_dir(model_path(format).string());
  for (const auto& [n, t] : set->tensors()) {
    const bool want = layer_in(n, "model.layers.") ||
                      (begin == 0 && n.rfind("model.embed_tokens.", 0) == 0) ||
                      (end == kLayers && (n.rfind("model.norm.", 0) == 0 || n.rfind("lm_head.", 0) == 0));
    if (want) total += t.nbytes;
  }
  return total;
}

class QuantSync : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    const fs::path hf = test_root() / "hf";
    test::write_tiny_model(hf, /*hidden=*/256, kLayers, /*inter=*/512, kVocab);
    test::write_tiny_gguf(hf, model_path("gguf"));
    convert::MlxOptions mo;
    mo.bits = 4;
    mo.group_size = 64;
    mo.threads = 1;
    convert::export_mlx(hf.string(), model_path("mlx").string(), mo);
    for (const char* f : {"gguf", "mlx"}) {
      auto local = runtime::make_local_pipeline(model_path(f).string(), {1, 256});
      references()[f] = test::logits_then_greedy(*local, kPrompt);
      ASSERT_EQ(references()[f].logits.size(), kPrompt.size() * kVocab);
      ASSERT_EQ(references()[f].ids.size(), 5u);
    }
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(test_root(), ec);
  }
  static std::map<std::string, test::PromptOutput>& references() {
    static std::map<std::string, test::PromptOutput> r;
    return r;
  }

  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& ch : name)
      if (ch == '/') ch = '_';
    cache_ = test_root() / ("cache-" + name);
    fs::remove_all(cache_);
    counters_ = std::make_shared<SyncCounters>();
  }

  std::string model() const { return model_path(GetParam()).string(); }

  RemotePipelineOptions options(const std::string& peer) {
    RemotePipelineOptions o;
    o.model_dir = model();
    o.peers = {peer};
    o.ranges = {{0, 2}, {2, 4}};
    o.stage.threads = 1;
    o.stage.max_context = 256;
    o.secret = kSecret;
    o.sync = SyncMode::Always;
    o.sync_counters = counters_;
    o.sync_chunk_bytes = 4096;  // many frames even for this small model
    o.result_timeout_ms = 30000;
    return o;
  }

  fs::path cache_folder() const { return cache_ / fingerprint(model()); }

  void expect_reference(runtime::Pipeline& p) {
    test::PromptOutput got = test::logits_then_greedy(p, kPrompt);
    const test::PromptOutput& want = references()[GetParam()];
    ASSERT_EQ(got.logits.size(), want.logits.size());
    EXPECT_EQ(std::memcmp(got.logits.data(), want.logits.data(), got.logits.size() * 4), 0);
    EXPECT_EQ(got.ids, want.ids);
  }

  // Where a tensor lies in the worker's cache: its file, offset and size.
  struct Place {
    fs::path file;
    uint64_t offset = 0, nbytes = 0;
  };
  Place cached(const std::string& name, const std::string& file_in_folder) const {
    Place p;
    if (GetParam() == "gguf") {
      p.file = cache_folder() / "model.gguf";
      auto m = formats::GgufModel::open(p.file.string());
      const formats::GgufTensor& t = m.tensor(name);
      p.offset = t.file_offset;
      p.nbytes = t.nbytes;
      return p;
    }
    p.file = cache_folder() / file_in_folder;
    MappedFile mf(p.file.string());
    for (const auto& t : model::parse_safetensors_header(mf.data(), mf.size(), p.file.string(), 0))
      if (t.name == name) p.offset = t.offset, p.nbytes = t.nbytes;
    return p;
  }

  fs::path cache_;
  std::shared_ptr<SyncCounters> counters_;
};

void flip_byte(const fs::path& file, uint64_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c ^= 0x10;
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

TEST_P(QuantSync, EmptyCacheReceivesExactlyItsStoredTensorsThenNothing) {
  const uint64_t want = stored_stage_bytes(GetParam(), 2, 4);
  {
    test::ThreadWorker w(kSecret, cache_.string());
    auto p = make_remote_pipeline(options(w.address()));
    EXPECT_EQ(counters_->tensor_bytes.load(), want);
    EXPECT_EQ(counters_->refused.load(), 0u);
    expect_reference(*p);
  }
  const fs::path dir = cache_folder();
  if (GetParam() == "gguf") {
    // The coordinator's layout with only the stage's tensors written: a model ModelFiles opens
    // (the same fingerprint), the other layers' tensors holes of zeros.
    EXPECT_EQ(fingerprint(dir.string()), fingerprint(model()));
    EXPECT_EQ(fs::file_size(dir / "model.gguf"), fs::file_size(model()));
    struct stat st {};
    ASSERT_EQ(::stat((dir / "model.gguf").c_str(), &st), 0);
    EXPECT_LT(uint64_t(st.st_blocks) * 512, fs::file_size(model()) * 3 / 4) << "not sparse";
    auto m = formats::GgufModel::open(dir.string());
    for (const char* other : {"token_embd.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight"}) {
      const auto bytes = m.tensor(other).bytes();
      EXPECT_TRUE(std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; })) << other;
    }
    auto orig = formats::GgufModel::open(model());
    for (const char* mine : {"blk.3.ffn_down.weight", "output.weight", "rope_freqs.weight"}) {
      const auto a = m.tensor(mine).bytes(), b = orig.tensor(mine).bytes();
      EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << mine;
    }
  } else {
    // An MLX folder: config.json with its quantization, the stage's codes, scales and biases.
    for (const char* f : {"config.json", "model.safetensors.index.json", "layer-00002.safetensors",
                          "layer-00003.safetensors", "norm.safetensors", "lm-head.safetensors"})
      EXPECT_TRUE(fs::exists(dir / f)) << f;
    EXPECT_FALSE(fs::exists(dir / "embed.safetensors"));
    EXPECT_FALSE(fs::exists(dir / "layer-00001.safetensors"));
    EXPECT_EQ(model::detect_model_format(dir.string()), model::ModelFormat::MlxFolder);
    auto set = model::SafetensorsSet::open_dir(dir.string());
    EXPECT_EQ(set->info("model.layers.2.mlp.down_proj.weight").dtype_name, "U32");
    EXPECT_TRUE(set->has("model.layers.2.mlp.down_proj.scales"));
    EXPECT_TRUE(set->has("lm_head.biases"));
  }

  // A restarted worker and coordinator: the cache is re-verified and nothing is sent.
  counters_ = std::make_shared<SyncCounters>();
  test::ThreadWorker w(kSecret, cache_.string());
  auto p = make_remote_pipeline(options(w.address()));
  EXPECT_EQ(counters_->manifests.load(), 1u);
  EXPECT_EQ(counters_->tensor_bytes.load(), 0u);
  expect_reference(*p);
}

TEST_P(QuantSync, OtherLayersAddOnlyTheirTensors) {
  test::ThreadWorker w(kSecret, cache_.string());
  { auto p = make_remote_pipeline(options(w.address())); }
  // The same worker now holds layers 1-3: it receives layer 1 only.
  counters_ = std::make_shared<SyncCounters>();
  auto o = options(w.address());
  o.ranges = {{0, 1}, {1, 4}};
  auto p = make_remote_pipeline(o);
  EXPECT_EQ(counters_->tensor_bytes.load(),
            stored_stage_bytes(GetParam(), 1, 4) - stored_stage_bytes(GetParam(), 2, 4));
  expect_reference(*p);
}

TEST_P(QuantSync, InterruptedTransferResumesFromTheByteItStopped) {
  const uint64_t want = stored_stage_bytes(GetParam(), 2, 4);
  const uint64_t cut = want / 2 + 1234;  // inside a tensor, not at a chunk boundary
  test::ThreadWorker w(kSecret, cache_.string());
  {
    auto o = options(w.address());
    o.sync_stop_after_bytes = cut;
    EXPECT_THROW(make_remote_pipeline(o), Error);
    EXPECT_EQ(counters_->tensor_bytes.load(), cut);
  }
  counters_ = std::make_shared<SyncCounters>();
  auto p = make_remote_pipeline(options(w.address()));
  EXPECT_EQ(counters_->tensor_bytes.load(), want - cut);
  expect_reference(*p);
}

TEST_P(QuantSync, FlippedByteInTheCacheRefetchesOnlyThatTensor) {
  {
    test::ThreadWorker w(kSecret, cache_.string());
    auto p = make_remote_pipeline(options(w.address()));
  }
  const bool gguf = GetParam() == "gguf";
  const Place victim = cached(gguf ? "blk.3.ffn_down.weight" : "model.layers.3.mlp.down_proj.scales",
                              "layer-00003.safetensors");
  ASSERT_GT(victim.nbytes, 0u);
  flip_byte(victim.file, victim.offset + victim.nbytes / 2);
  counters_ = std::make_shared<SyncCounters>();
  test::ThreadWorker w(kSecret, cache_.string());
  auto p = make_remote_pipeline(options(w.address()));
  EXPECT_EQ(counters_->tensor_bytes.load(), victim.nbytes);
  EXPECT_EQ(counters_->ranges.load(), 1u);
  expect_reference(*p);
}

TEST_P(QuantSync, DamagedInTransitFailsClearlyAndTheWorkerKeepsServing) {
  const uint64_t want = stored_stage_bytes(GetParam(), 2, 4);
  test::ThreadWorker w(kSecret, cache_.string());
  auto o = options(w.address());
  o.sync_corrupt_byte = want / 3;
  try {
    make_remote_pipeline(o);
    ADD_FAILURE() << "a damaged tensor was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("arrived damaged"), std::string::npos) << e.what();
  }
  // The same worker loads from the same coordinator setup: it kept every other tensor, and only
  // the damaged one comes again.
  counters_ = std::make_shared<SyncCounters>();
  auto p = make_remote_pipeline(options(w.address()));
  EXPECT_EQ(counters_->ranges.load(), 1u);
  EXPECT_GT(counters_->tensor_bytes.load(), 0u);
  EXPECT_LT(counters_->tensor_bytes.load(), want / 4);
  expect_reference(*p);
}

// A connection that keeps what is sent on it (to ask the real TensorServer for its answers).
class Recorder final : public Connection {
 public:
  struct Sent {
    FrameType type;
    std::vector<uint8_t> payload;
  };
  std::vector<Sent> sent;
  void send_pieces(FrameType type, std::span<const std::span<const uint8_t>> pieces) override {
    Sent s{type, {}};
    for (auto piece : pieces) s.payload.insert(s.payload.end(), piece.begin(), piece.end());
    sent.push_back(std::move(s));
  }
  Frame recv(int, uint64_t) override { throw ConnectionError("nothing to receive"); }
  void close() override {}
  std::string peer() const override { return "recorder"; }
};

// A fake coordinator: handshakes as the real one would (same fingerprint), asks the worker to
// load layers 2-3 with sync, and answers its manifest request with `edit`ed manifest and
// (optionally) tensor bytes cut short. Returns the worker's error frame text.
std::string fake_coordinator_load(const std::string& worker, const std::string& model,
                                  const std::function<void(ManifestMsg&)>& edit, bool truncate) {
  const std::string fp = fingerprint(model);
  TensorServer server(model, fp);
  auto conn = tcp_connect(worker, 10000);
  HandshakeOptions h;
  h.secret = kSecret;
  h.fingerprint = fp;
  h.role = "coordinator";
  h.name = "worker";
  h.client_id = "fake-coordinator";
  handshake_client(*conn, h);
  LoadMsg load;
  load.layers = {2, 4};
  load.max_context = 256;
  load.sync = true;
  conn->send(FrameType::Load, encode_load(load));
  for (;;) {
    Frame f;
    try {
      f = recv_checked(*conn, 30000);
    } catch (const Error& e) {
      return e.what();  // the worker's error frame
    }
    if (f.type() == FrameType::ManifestRequest) {
      // What the real server answers, then edited.
      Recorder answer;
      server.handle(answer, f, "test");
      ManifestMsg m = decode_manifest(answer.sent.front().payload);
      edit(m);
      conn->send(FrameType::Manifest, encode_manifest(m));
    } else if (f.type() == FrameType::TensorRequest) {
      TensorRequestMsg req = decode_tensor_request(f.payload);
      if (truncate) {  // half of the first tensor, then "done"
        auto head = encode_tensor_data_head({0, req.ranges[0].offset});
        std::vector<uint8_t> payload = head;
        payload.resize(head.size() + 100, 0x5a);
        conn->send(FrameType::TensorData, payload);
        conn->send(FrameType::TensorsDone, encode_u64(100));
      } else {
        Recorder answer;
        server.handle(answer, f, "test");
        for (const auto& s : answer.sent) conn->send(s.type, s.payload);
      }
    } else {
      return "unexpected frame " + frame_type_name(f.header.type);
    }
  }
}

TEST_P(QuantSync, BadManifestsAndTruncatedDataFailClearlyAndTheWorkerKeepsServing) {
  test::ThreadWorker w(kSecret, cache_.string());
  const bool gguf = GetParam() == "gguf";
  if (gguf) {
    // A header that is not the fingerprint's model (one metadata byte changed).
    std::string why = fake_coordinator_load(w.address(), model(), [](ManifestMsg& m) {
      std::string& h = m.gguf_parts[0].header;
      const size_t at = h.find("meshlm sync test");
      h[at] = 'M';
    }, false);
    EXPECT_NE(why.find("do not match its model fingerprint"), std::string::npos) << why;
    // A manifest that claims another type for a tensor than the header says.
    why = fake_coordinator_load(w.address(), model(), [](ManifestMsg& m) {
      for (auto& e : m.tensors)
        if (e.name == "blk.2.attn_q.weight") e.dtype = "Q4_0", e.nbytes = e.nbytes / 144 * 8 * 18;
    }, false);
    EXPECT_NE(why.find("is not the GGUF header's"), std::string::npos) << why;
  } else {
    // An MLX manifest without a matrix's scales.
    std::string why = fake_coordinator_load(w.address(), model(), [](ManifestMsg& m) {
      std::erase_if(m.tensors, [](const ManifestEntry& e) {
        return e.name == "model.layers.2.self_attn.q_proj.scales";
      });
    }, false);
    EXPECT_NE(why.find("the manifest lists"), std::string::npos) << why;
    // A norm claimed to be of a block type a safetensors file cannot hold.
    why = fake_coordinator_load(w.address(), model(), [](ManifestMsg& m) {
      for (auto& e : m.tensors)
        if (e.name == "model.layers.2.input_layernorm.weight") {
          e.dtype = "Q8_0";
          e.nbytes = uint64_t(e.shape[0]) / 32 * 34;
        }
    }, false);
    EXPECT_NE(why.find("cannot hold"), std::string::npos) << why;
  }
  // Tensor data cut short.
  std::string why = fake_coordinator_load(w.address(), model(), [](ManifestMsg&) {}, true);
  EXPECT_NE(why.find("finished after 0 of"), std::string::npos) << why;

  // The worker still serves the real coordinator.
  auto p = make_remote_pipeline(options(w.address()));
  expect_reference(*p);
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantSync, ::testing::Values("gguf", "mlx"));

}  // namespace
}  // namespace meshlm::remote
