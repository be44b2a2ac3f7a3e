// Model sync end to end, in-process: a remote::Worker with an empty cache receives exactly the
// tensors of its layers from make_remote_pipeline's coordinator, gives bit-identical results,
// gets nothing the second time, resumes an interrupted transfer from the byte where it stopped,
// re-fetches only a damaged tensor, and a hostile worker's requests are refused while the
// coordinator keeps serving.
#include "remote/model_sync.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "model/safetensors.h"
#include "model/weights.h"
#include "remote/fingerprint.h"
#include "remote/remote_pipeline.h"
#include "runtime/pipeline.h"
#include "transport/handshake.h"
#include "transport/tcp_transport.h"
#include "prompt_output.h"
#include "sync_test_util.h"

namespace meshlm::remote {

using namespace transport;
namespace {

namespace fs = std::filesystem;
const std::string kSecret = "sync-secret";

fs::path test_root() {
  static fs::path root =
      fs::temp_directory_path() / ("meshlm_sync_test_" + std::to_string(getpid()));
  return root;
}
fs::path model_dir() {
  return test_root() / "model";
}

const std::vector<int32_t> kPrompt = {1, 17, 200, 42, 7, 99, 250, 3};

class ModelSync : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    test::write_tiny_model(model_dir());
    auto local = runtime::make_local_pipeline(model_dir().string(), {1, 256});
    reference_ = new test::PromptOutput(test::logits_then_greedy(*local, kPrompt));
    ASSERT_EQ(reference_->logits.size(), kPrompt.size() * 256);
    ASSERT_EQ(reference_->ids.size(), 5u);
  }
  static void TearDownTestSuite() {
    delete reference_;
    std::error_code ec;
    fs::remove_all(test_root(), ec);
  }

  void SetUp() override {
    cache_ = test_root() / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(cache_);
    counters_ = std::make_shared<SyncCounters>();
  }

  RemotePipelineOptions options(const std::string& peer) {
    RemotePipelineOptions o;
    o.model_dir = model_dir().string();
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

  // Bytes of the tensors of layers [begin, end) in the coordinator's model.
  static uint64_t stage_bytes(int64_t begin, int64_t end) {
    auto cfg = model::ModelConfig::from_dir(model_dir().string());
    auto set = model::SafetensorsSet::open_dir(model_dir().string());
    uint64_t total = 0;
    for (const auto& n : model::stage_tensor_names(cfg, {begin, end})) total += set->info(n).nbytes;
    return total;
  }

  fs::path cache_folder() const { return cache_ / fingerprint(model_dir().string()); }

  void expect_reference(runtime::Pipeline& p) {
    auto [logits, ids] = test::logits_then_greedy(p, kPrompt);
    ASSERT_EQ(logits.size(), reference_->logits.size());
    EXPECT_EQ(std::memcmp(logits.data(), reference_->logits.data(), logits.size() * 4), 0);
    EXPECT_EQ(ids, reference_->ids);
  }

  fs::path cache_;
  std::shared_ptr<SyncCounters> counters_;
  static test::PromptOutput* reference_;
};

test::PromptOutput* ModelSync::reference_ = nullptr;

TEST_F(ModelSync, EmptyCacheReceivesExactlyItsTensorsThenNothing) {
  const uint64_t want = stage_bytes(2, 4);
  {
    test::ThreadWorker w(kSecret, cache_.string());
    auto p = make_remote_pipeline(options(w.address()));
    EXPECT_EQ(counters_->tensor_bytes.load(), want);
    EXPECT_EQ(counters_->ranges.load(), 2u * 11 + 2);  // two layers, norm, lm_head
    EXPECT_EQ(counters_->refused.load(), 0u);
    expect_reference(*p);
  }
  // The cache is an ordinary model folder holding exactly the stage's tensors.
  fs::path dir = cache_folder();
  for (const char* f : {"config.json", "model.safetensors.index.json", "layer-00002.safetensors",
                        "layer-00003.safetensors", "norm.safetensors", "lm-head.safetensors"}) {
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  }
  EXPECT_FALSE(fs::exists(dir / "embed.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "layer-00001.safetensors"));
  auto set = model::SafetensorsSet::open_dir(dir.string());
  auto cfg = model::ModelConfig::from_dir(model_dir().string());
  EXPECT_EQ(set->tensors().size(), model::stage_tensor_names(cfg, {2, 4}).size());

  // A restarted worker and coordinator: the cache is re-verified and nothing is sent.
  counters_ = std::make_shared<SyncCounters>();
  test::ThreadWorker w(kSecret, cache_.string());
  auto p = make_remote_pipeline(options(w.address()));
  EXPECT_EQ(counters_->manifests.load(), 1u);
  EXPECT_EQ(counters_->tensor_bytes.load(), 0u);
  EXPECT_EQ(counters_->ranges.load(), 0u);
  expect_reference(*p);
}

TEST_F(ModelSync, InterruptedTransferResumesFromTheByteItStopped) {
  const uint64_t want = stage_bytes(2, 4);
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
  EXPECT_FALSE(fs::exists(cache_folder() / "layer-00002.safetensors.partial"));
  EXPECT_FALSE(fs::exists(cache_folder() / "layer-00003.safetensors.partial"));
}

TEST_F(ModelSync, FlippedByteRefetchesOnlyThatTensor) {
  {
    test::ThreadWorker w(kSecret, cache_.string());
    auto p = make_remote_pipeline(options(w.address()));
  }
  // Flip one byte in the middle of layer 3's down projection.
  fs::path file = cache_folder() / "layer-00003.safetensors";
  const std::string victim = "model.layers.3.mlp.down_proj.weight";
  size_t offset = 0, nbytes = 0;
  {
    MappedFile mf(file.string());
    for (const auto& t : model::parse_safetensors_header(mf.data(), mf.size(), file.string(), 0)) {
      if (t.name == victim) offset = t.offset, nbytes = t.nbytes;
    }
  }
  ASSERT_GT(nbytes, 0u);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset + nbytes / 2));
    char c = 0;
    f.read(&c, 1);
    c ^= 0x10;
    f.seekp(static_cast<std::streamoff>(offset + nbytes / 2));
    f.write(&c, 1);
  }
  counters_ = std::make_shared<SyncCounters>();
  test::ThreadWorker w(kSecret, cache_.string());
  auto p = make_remote_pipeline(options(w.address()));
  EXPECT_EQ(counters_->tensor_bytes.load(), nbytes);
  EXPECT_EQ(counters_->ranges.load(), 1u);
  expect_reference(*p);
}

TEST_F(ModelSync, WorkerOnTheSameMachineUsesTheCoordinatorsFolder) {
  test::ThreadWorker w(kSecret, cache_.string());
  auto o = options(w.address());
  o.sync = SyncMode::Auto;
  auto p = make_remote_pipeline(o);
  EXPECT_EQ(counters_->manifests.load(), 0u);
  EXPECT_EQ(counters_->tensor_bytes.load(), 0u);
  EXPECT_FALSE(fs::exists(cache_));
  expect_reference(*p);
}

TEST_F(ModelSync, WorkerWithItsOwnCopyDoesNotSync) {
  test::ThreadWorker w(kSecret, cache_.string(), model_dir().string());
  auto p = make_remote_pipeline(options(w.address()));
  EXPECT_EQ(counters_->manifests.load(), 0u);
  expect_reference(*p);
}

// A fake worker that asks for things it may not have, then for something it may.
TEST_F(ModelSync, HostileRequestsAreRefusedAndTheCoordinatorKeepsServing) {
  TcpListener listener("127.0.0.1:0");
  std::vector<std::string> refusals;
  Hash128 got_hash;
  uint64_t got_bytes = 0;
  std::string thread_error;
  std::thread fake([&] {
    try {
      auto conn = listener.accept(10000);
      if (!conn) throw Error("test", "no coordinator");
      HandshakeOptions h;
      h.secret = kSecret;
      handshake_server(*conn, h);
      Frame load = recv_checked(*conn, 10000);
      if (load.type() != FrameType::Load || !decode_load(load.payload).sync) {
        throw Error("test", "no sync load");
      }
      auto refused = [&](FrameType type, std::vector<uint8_t> payload) {
        conn->send(type, payload);
        Frame f = recv_checked(*conn, 10000);
        if (f.type() != FrameType::SyncRefused) throw Error("test", "not refused");
        refusals.push_back(decode_text(f.payload));
      };
      refused(FrameType::TensorRequest, encode_tensor_request({{{"../config.json", 0}}}));
      refused(FrameType::TensorRequest, encode_tensor_request({{{"model.layers.9.mlp.x", 0}}}));
      refused(FrameType::TensorRequest,
              encode_tensor_request({{{"model.norm.weight", 0}, {"config.json", 0}}}));
      refused(FrameType::TensorRequest, encode_tensor_request({{{"model.norm.weight", 9999}}}));
      refused(FrameType::ManifestRequest, encode_manifest_request({2, 99}));
      // A legitimate request is still served on the same connection.
      conn->send(FrameType::TensorRequest, encode_tensor_request({{{"model.norm.weight", 0}}}));
      StreamHash hash;
      for (;;) {
        Frame f = recv_checked(*conn, 10000);
        if (f.type() == FrameType::TensorsDone) break;
        std::span<const uint8_t> data;
        decode_tensor_data(f.payload, data);
        hash.update(data);
        got_bytes += data.size();
      }
      got_hash = hash.digest();
    } catch (const std::exception& e) {
      thread_error = e.what();
    }
  });
  EXPECT_THROW(make_remote_pipeline(options(listener.address())), Error);
  fake.join();
  EXPECT_EQ(thread_error, "");
  ASSERT_EQ(refusals.size(), 5u);
  EXPECT_NE(refusals[0].find("not a tensor name"), std::string::npos) << refusals[0];
  EXPECT_NE(refusals[1].find("not part of model"), std::string::npos) << refusals[1];
  EXPECT_NE(refusals[2].find("'config.json' is not part"), std::string::npos) << refusals[2];
  EXPECT_NE(refusals[3].find("past the end"), std::string::npos) << refusals[3];
  EXPECT_NE(refusals[4].find("outside a model of 4 layers"), std::string::npos) << refusals[4];
  EXPECT_EQ(counters_->refused.load(), 5u);
  auto set = model::SafetensorsSet::open_dir(model_dir().string());
  const auto& norm = set->info("model.norm.weight");
  EXPECT_EQ(got_bytes, norm.nbytes);
  EXPECT_EQ(got_hash, hash_bytes({set->data(norm), norm.nbytes}));

  // A coordinator drops a worker after repeated refusals.
  TcpListener listener2("127.0.0.1:0");
  int answered = 0;
  std::thread spammer([&] {
    try {
      auto conn = listener2.accept(10000);
      HandshakeOptions h;
      h.secret = kSecret;
      handshake_server(*conn, h);
      recv_checked(*conn, 10000);
      for (int i = 0; i < 100; ++i) {
        conn->send(FrameType::TensorRequest, encode_tensor_request({{{"../../etc/passwd", 0}}}));
        recv_checked(*conn, 10000);
        ++answered;
      }
    } catch (const std::exception&) {
    }
  });
  try {
    make_remote_pipeline(options(listener2.address()));
    ADD_FAILURE() << "a spamming worker was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("refused requests"), std::string::npos) << e.what();
  }
  spammer.join();
  EXPECT_LT(answered, 10);

  // And the same coordinator setup serves a real worker afterwards.
  test::ThreadWorker w(kSecret, cache_.string());
  auto p = make_remote_pipeline(options(w.address()));
  expect_reference(*p);
}

// recv_into() reuses one frame's buffer: frames of different sizes, empty ones included, each
// arrive whole and alone (nothing of a longer earlier frame is left over).
TEST(TcpRecvInto, ReusedFrameHoldsExactlyEachPayload) {
  TcpListener listener("127.0.0.1:0");
  std::unique_ptr<TcpConnection> server;
  std::thread accepter([&] { server = listener.accept(10000); });
  auto client = tcp_connect(listener.address());
  accepter.join();
  ASSERT_TRUE(server);
  const std::vector<size_t> sizes = {8u << 20, 5, 0, (8u << 20) + 3, 1u << 20, 8u << 20};
  std::vector<std::vector<uint8_t>> sent;
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<uint8_t> p(sizes[i]);
    for (size_t k = 0; k < p.size(); ++k) p[k] = static_cast<uint8_t>(k * 31 + i);
    sent.push_back(std::move(p));
  }
  std::thread sender([&] {
    for (auto& p : sent) client->send(FrameType::TensorData, p);
  });
  Frame f;
  for (size_t i = 0; i < sizes.size(); ++i) {
    recv_checked_into(*server, f, 10000);
    EXPECT_EQ(f.type(), FrameType::TensorData);
    ASSERT_EQ(f.payload.size(), sizes[i]) << "frame " << i;
    EXPECT_TRUE(f.payload == sent[i]) << "frame " << i;
  }
  sender.join();
}

}  // namespace
}  // namespace meshlm::remote
