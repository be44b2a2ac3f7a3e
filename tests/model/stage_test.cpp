// Exactness of the stage split and of batching: N in-process stages give bit-identical logits to
// one; a sequence batched with others, or prefilled in different chunk sizes, gives bit-identical
// logits to the sequence alone.
#include <sys/mman.h>
#include <sys/resource.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#include "core/error.h"
#include "formats/weight_format.h"
#include "model/kv_cache.h"
#include "model/stage.h"
#include "runtime/pipeline.h"
#include "batch_checks.h"
#include "test_util.h"

namespace meshlm {
namespace {

std::vector<int32_t> prompt_ids(int n, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(int32_t((i * 7919 + salt * 104729) % 151000 + 17));
  return ids;
}

// Prefill in chunks of `chunk`, then 8 greedy decode steps; returns all logits of the decode
// steps and the last prefill chunk concatenated.
// start / first_ops: the first `start` positions come from prefix blocks restored by first_ops.
std::vector<float> run(runtime::Pipeline& pipe, const std::vector<int32_t>& prompt, int chunk,
                       int64_t seq, int32_t start = 0, std::vector<model::KvOp> first_ops = {}) {
  std::vector<float> all;
  int32_t pos = start;
  std::vector<int32_t> next;
  for (size_t off = size_t(start); off < prompt.size(); off += size_t(chunk)) {
    size_t n = std::min(prompt.size() - off, size_t(chunk));
    runtime::MicroBatch mb;
    mb.kv_ops = std::move(first_ops);
    first_ops.clear();
    mb.chunks.push_back({seq, pos, int32_t(n), off + n == prompt.size(), false});
    mb.tokens.assign(prompt.begin() + off, prompt.begin() + off + n);
    mb.return_logits = true;
    pipe.launch(std::move(mb));
    auto r = pipe.wait();
    EXPECT_TRUE(r.error.empty()) << r.error;
    pos += int32_t(n);
    if (off + n == prompt.size()) all = r.logits;
  }
  int64_t vocab = pipe.config().vocab;
  for (int step = 0; step < 8; ++step) {
    int32_t id = runtime::argmax(all.data() + all.size() - size_t(vocab), vocab);
    runtime::MicroBatch mb;
    mb.chunks.push_back({seq, pos++, 1, true, false});
    mb.tokens = {id};
    mb.return_logits = true;
    pipe.launch(std::move(mb));
    auto r = pipe.wait();
    EXPECT_TRUE(r.error.empty()) << r.error;
    all.insert(all.end(), r.logits.begin(), r.logits.end());
  }
  pipe.release(seq);
  return all;
}

using test::bit_equal;

// The ref backend (scalar reference kernels) is the oracle of the cpu backend: the same model,
// split or not, gives the same logits within float rounding for every position of a prompt
// prefilled in uneven chunks, and for a few decode steps fed the same tokens.
TEST(Stage, CpuBackendAgreesWithTheReferenceBackend) {
  REQUIRE_MODEL();
  const auto prompt = prompt_ids(37, 3);
  auto logits_of = [&](const std::string& backend, model::LayerPartition ranges) {
    model::StageOptions so;
    so.backend = backend;
    so.threads = 2;
    so.max_context = 64;
    auto pipe = runtime::make_local_pipeline(MESHLM_GOLDEN_MODEL, so, ranges);
    std::vector<float> all;
    int32_t pos = 0;
    for (int32_t n : {1, 16, 20}) {  // uneven chunks, every position's logits
      runtime::MicroBatch mb;
      mb.chunks.push_back({0, pos, n, false, true});
      mb.tokens.assign(prompt.begin() + pos, prompt.begin() + pos + n);
      mb.return_logits = true;
      pipe->launch(std::move(mb));
      auto r = pipe->wait();
      EXPECT_TRUE(r.error.empty()) << r.error;
      all.insert(all.end(), r.logits.begin(), r.logits.end());
      pos += n;
    }
    return all;
  };
  const int64_t n_layers = model::ModelConfig::from_dir(MESHLM_GOLDEN_MODEL).n_layers;
  const std::vector<float> ref = logits_of("ref", {});
  float peak = 0;
  for (float f : ref) peak = std::max(peak, std::fabs(f));
  for (auto ranges : {model::LayerPartition{}, model::even_partition(n_layers, 2)}) {
    const std::vector<float> cpu = logits_of("cpu", ranges);
    ASSERT_EQ(cpu.size(), ref.size());
    float worst = 0;
    for (size_t i = 0; i < cpu.size(); ++i) worst = std::max(worst, std::fabs(cpu[i] - ref[i]));
    EXPECT_LT(worst, 1e-4f * peak + 1e-4f)
        << "stages " << ranges.size() << ", peak |logit| " << peak;
  }
}

TEST(Stage, SplitsGiveBitIdenticalLogits) {
  REQUIRE_MODEL();
  model::StageOptions so;
  so.threads = 2;
  so.max_context = 512;
  auto prompt = prompt_ids(150, 1);  // longer than one 128-token prefill chunk
  auto one = runtime::make_local_pipeline(MESHLM_GOLDEN_MODEL, so);
  auto ref = run(*one, prompt, 128, 1);
  for (const char* layers : {"0-1,2-3", "0-0,1-2,3-3", "0-0,1-1,2-2,3-3"}) {
    auto ranges = model::parse_partition(layers, 4);
    auto multi = runtime::make_local_pipeline(MESHLM_GOLDEN_MODEL, so, ranges);
    EXPECT_EQ(multi->stages().size(), ranges.size());
    EXPECT_TRUE(bit_equal(ref, run(*multi, prompt, 128, 1))) << layers;
  }
}

TEST(Stage, ChunkSizeAndThreadsDoNotChangeLogits) {
  REQUIRE_MODEL();
  model::StageOptions so;
  so.threads = 1;
  so.max_context = 512;
  auto prompt = prompt_ids(70, 2);
  auto p1 = runtime::make_local_pipeline(MESHLM_GOLDEN_MODEL, so);
  auto ref = run(*p1, prompt, 70, 5);
  EXPECT_TRUE(bit_equal(ref, run(*p1, prompt, 1, 6)));
  EXPECT_TRUE(bit_equal(ref, run(*p1, prompt, 33, 7)));
  so.threads = 3;
  auto p3 = runtime::make_local_pipeline(MESHLM_GOLDEN_MODEL, so);
  EXPECT_TRUE(bit_equal(ref, run(*p3, prompt, 16, 8)));
}

TEST(Stage, BatchedSequencesMatchSequencesAlone) {
  REQUIRE_MODEL();
  model::StageOptions so;
  so.threads = 2;
  so.max_context = 256;
  auto pipe = runtime::make_local_pipeline(MESHLM_GOLDEN_MODEL, so);
  test::expect_batched_equals_alone(
      *pipe, {prompt_ids(5, 3), prompt_ids(40, 4), prompt_ids(1, 5), prompt_ids(17, 6)});
}

// Prefix blocks (issue 17): positions saved from one sequence and restored into another give
// the logits that computing them gives, bit for bit, on one stage and across two.
TEST(Stage, PrefixBlocksRestoreTheSameKv) {
  REQUIRE_MODEL();
  model::StageOptions so;
  so.threads = 2;
  so.max_context = 256;
  using K = model::KvOp::Kind;
  const auto prompt = prompt_ids(70, 9);
  for (auto ranges : {model::LayerPartition{}, model::LayerPartition{{0, 2}, {2, 4}}}) {
    auto pipe = runtime::make_local_pipeline(MESHLM_GOLDEN_MODEL, so, ranges);
    const auto ref = run(*pipe, prompt, 70, 1);
    // Sequence 2 computes 48 positions in two chunks and keeps them as blocks 7 and 8.
    for (int32_t off : {0, 30}) {
      runtime::MicroBatch mb;
      mb.chunks.push_back({2, off, off == 0 ? 30 : 18, false, false});
      mb.tokens.assign(prompt.begin() + off, prompt.begin() + (off == 0 ? 30 : 48));
      if (off == 30) mb.kv_ops = {{K::Save, 2, 7, 0, 32}, {K::Save, 2, 8, 32, 16}};
      pipe->launch(std::move(mb));
      ASSERT_EQ(pipe->wait().error, "");
    }
    pipe->release(2);
    EXPECT_TRUE(bit_equal(ref, run(*pipe, prompt, 70, 3, 48,
                                   {{K::Restore, 3, 7, 0, 32}, {K::Restore, 3, 8, 32, 16}})));
    EXPECT_TRUE(bit_equal(ref, run(*pipe, prompt, 5, 4, 32, {{K::Restore, 4, 7, 0, 32}})));
    // A block that is not there, of another length, or not continuing the sequence fails the
    // batch, not the stage.
    for (auto bad : {std::vector<model::KvOp>{{K::Restore, 5, 99, 0, 32}},
                     std::vector<model::KvOp>{{K::Restore, 5, 7, 0, 16}},
                     std::vector<model::KvOp>{{K::Restore, 5, 8, 16, 16}}}) {
      runtime::MicroBatch mb;
      mb.kv_ops = bad;
      mb.chunks.push_back({5, 48, 1, true, false});
      mb.tokens = {prompt[48]};
      mb.return_logits = true;
      pipe->launch(std::move(mb));
      EXPECT_NE(pipe->wait().error, "");
      pipe->release(5);
    }
    runtime::MicroBatch drop;
    drop.kv_ops = {{K::DropAll, 0, 0, 0, 0}};
    drop.chunks.push_back({6, 0, 3, true, false});
    drop.tokens = {prompt[0], prompt[1], prompt[2]};
    drop.return_logits = true;
    pipe->launch(std::move(drop));
    EXPECT_EQ(pipe->wait().error, "");
    pipe->release(6);
    runtime::MicroBatch gone;
    gone.kv_ops = {{K::Restore, 7, 7, 0, 32}};
    gone.chunks.push_back({7, 32, 1, true, false});
    gone.tokens = {prompt[32]};
    pipe->launch(std::move(gone));
    EXPECT_NE(pipe->wait().error.find("unknown prefix block 7"), std::string::npos);
  }
  // A block holds its positions' KV on every layer of the stage, and counts as KV in use.
  model::Stage stage(MESHLM_GOLDEN_MODEL, {0, 4}, so);
  std::vector<float> hidden, logits;
  std::vector<model::SeqChunk> c = {{1, 0, 40, true, false}};
  std::vector<int32_t> t(prompt.begin(), prompt.begin() + 40);
  stage.forward(c, t, hidden, logits);
  const std::vector<model::KvOp> save = {{K::Save, 1, 3, 0, 32}};
  stage.apply_kv_ops(save, true);
  EXPECT_EQ(stage.prefix_block_bytes(), 32 * stage.kv_bytes_per_token());
  stage.release(1);
  EXPECT_EQ(stage.kv_bytes_in_use(), 32 * stage.kv_bytes_per_token());
  EXPECT_THROW(stage.apply_kv_ops(save, true), Error);  // sequence 1 is gone
  stage.release_all();
  EXPECT_EQ(stage.kv_bytes_in_use(), 0u);
}

// KV cache types (--cache-type, issue 17): each type gives bit-identical logits on one stage and
// split in two, chunked or not, batched or alone; its prefix blocks restore the same bits; its
// cpu logits agree with the ref backend's; it costs the memory its rows take; and it changes
// the logits only a little against the exact f32 cache (which proves the type was applied).
TEST(Stage, CacheTypesAreExactAcrossStagesAndClose) {
  REQUIRE_MODEL();
  using K = model::KvOp::Kind;
  const auto cfg = model::ModelConfig::from_dir(MESHLM_GOLDEN_MODEL);
  const auto prompt = prompt_ids(70, 11);
  model::StageOptions so;
  so.threads = 2;
  so.max_context = 256;
  auto f32 = runtime::make_local_pipeline(MESHLM_GOLDEN_MODEL, so);
  const std::vector<float> exact = run(*f32, prompt, 70, 1);
  float peak = 0;
  for (float f : exact) peak = std::max(peak, std::fabs(f));
  for (WeightType type : {WeightType::BF16, WeightType::F16, WeightType::Q8_0}) {
    SCOPED_TRACE(formats::name(type));
    so.kv_type = type;
    so.backend = "cpu";
    auto one = runtime::make_local_pipeline(MESHLM_GOLDEN_MODEL, so);
    const auto ref = run(*one, prompt, 70, 1);
    EXPECT_TRUE(bit_equal(ref, run(*one, prompt, 9, 2)));  // chunked prefill
    auto two = runtime::make_local_pipeline(MESHLM_GOLDEN_MODEL, so, {{0, 1}, {1, 4}});
    EXPECT_TRUE(bit_equal(ref, run(*two, prompt, 70, 1)));
    test::expect_batched_equals_alone(*two, {prompt_ids(5, 3), prompt_ids(40, 4), prompt_ids(17, 6)});
    // Prefix blocks of a typed cache: saved and restored as stored.
    runtime::MicroBatch mb;
    mb.chunks.push_back({9, 0, 40, false, false});
    mb.tokens.assign(prompt.begin(), prompt.begin() + 40);
    mb.kv_ops = {};
    two->launch(std::move(mb));
    ASSERT_EQ(two->wait().error, "");
    runtime::MicroBatch save;
    save.chunks.push_back({9, 40, 1, false, false});
    save.tokens = {prompt[40]};
    save.kv_ops = {{K::Save, 9, 5, 0, 32}};
    two->launch(std::move(save));
    ASSERT_EQ(two->wait().error, "");
    two->release(9);
    EXPECT_TRUE(bit_equal(ref, run(*two, prompt, 70, 10, 32, {{K::Restore, 10, 5, 0, 32}})));
    // Close to the exact cache, but not equal: the type was used.
    ASSERT_EQ(ref.size(), exact.size());
    float worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(ref[i] - exact[i]));
    EXPECT_GT(worst, 0.0f);
    EXPECT_LT(worst, (type == WeightType::Q8_0 ? 0.05f : 0.02f) * peak);
    // The ref backend, reading its stored rows through formats::dequantize_row. Looser than the
    // f32 cache's 1e-4: the two backends' keys differ in the last bits, and where one of them
    // falls on the other side of a rounding boundary of the type, the stored value differs by a
    // whole step of it (a bf16 ulp, a q8_0 level).
    so.backend = "ref";
    auto by_ref = runtime::make_local_pipeline(MESHLM_GOLDEN_MODEL, so);
    const auto oracle = run(*by_ref, prompt, 70, 1);
    float off = 0;
    for (size_t i = 0; i < ref.size(); ++i) off = std::max(off, std::fabs(ref[i] - oracle[i]));
    EXPECT_LT(off, 1e-3f * peak);
    // Memory: rows of the type, padded to 4 bytes.
    so.backend = "cpu";
    model::Stage stage(MESHLM_GOLDEN_MODEL, {0, 4}, so);
    const int64_t kv = cfg.n_kv_heads * cfg.head_dim;
    const size_t row = (formats::row_bytes(type, kv) + 3) / 4 * 4;
    EXPECT_EQ(stage.kv_bytes_per_token(), size_t(4 * 2) * row);
    EXPECT_EQ(int64_t(stage.kv_bytes_per_token()), cfg.kv_bytes_per_token(type));
    EXPECT_EQ(stage.kv_type(), type);
  }
  EXPECT_EQ(model::kv_type_from_name("Q8_0"), WeightType::Q8_0);
  EXPECT_EQ(model::kv_type_from_name("q4_0"), std::nullopt);
  EXPECT_EQ(model::kv_type_name(WeightType::BF16), "bf16");
}

// A type whose blocks do not divide a head: refused by name before the weights are read.
TEST(Stage, CacheTypeThatDoesNotFitTheHeadsIsRefused) {
  REQUIRE_MODEL();
  const auto cfg = model::ModelConfig::from_dir(MESHLM_GOLDEN_MODEL);
  model::StageOptions so;
  so.kv_type = WeightType::Q4_0;
  EXPECT_THROW(model::Stage(MESHLM_GOLDEN_MODEL, {0, 4}, so), Error);
  if (cfg.head_dim % 32 != 0) {
    so.kv_type = WeightType::Q8_0;
    try {
      model::Stage stage(MESHLM_GOLDEN_MODEL, {0, 4}, so);
      ADD_FAILURE() << "q8_0 accepted with head_dim " << cfg.head_dim;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("head_dim"), std::string::npos) << e.what();
    }
  }
}

TEST(Stage, RejectsInconsistentBatches) {
  REQUIRE_MODEL();
  model::StageOptions so;
  so.threads = 1;
  so.max_context = 64;
  model::Stage stage(MESHLM_GOLDEN_MODEL, {0, 4}, so);
  std::vector<float> hidden, logits;
  std::vector<model::SeqChunk> c = {{1, 5, 2, true, false}};  // position 5 without a cache
  std::vector<int32_t> t = {1, 2};
  EXPECT_THROW(stage.forward(c, t, hidden, logits), Error);
  c = {{1, 0, 2, true, false}};
  std::vector<int32_t> bad = {1, 999999999};
  EXPECT_THROW(stage.forward(c, bad, hidden, logits), Error);
  c = {{1, 0, 65, true, false}};
  std::vector<int32_t> lng(65, 1);
  EXPECT_THROW(stage.forward(c, lng, hidden, logits), Error);  // beyond max_context
  c = {{1, 0, 2, true, false}};
  EXPECT_EQ(stage.forward(c, t, hidden, logits), 1);  // and still works afterwards
  EXPECT_EQ(stage.cached_tokens(1), 2);
  model::Stage middle(MESHLM_GOLDEN_MODEL, {1, 3}, so);
  std::vector<float> wrong(7);
  EXPECT_THROW(middle.forward(c, t, wrong, logits), Error);  // activations of the wrong size
}

// AddressSanitizer replaces mlock with a no-op: the kernel's locked-page count (VmLck) is then
// only checked in builds without it.
#if defined(__SANITIZE_ADDRESS__)
#define MESHLM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MESHLM_ASAN 1
#endif
#endif
#if defined(__linux__) && !defined(MESHLM_ASAN)
#define MESHLM_REAL_MLOCK 1
#else
#define MESHLM_REAL_MLOCK 0
#endif

#if MESHLM_REAL_MLOCK
// VmLck of this process in bytes, from /proc/self/status.
size_t locked_bytes_now() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmLck:", 0) == 0) return size_t(std::stoull(line.substr(6))) << 10;
  return 0;
}
#endif

TEST(Stage, MlockLocksExactlyTheStagesWeights) {
  REQUIRE_MODEL();
  model::StageOptions so;
  so.threads = 1;
  so.max_context = 64;
  struct rlimit lim{};
  ASSERT_EQ(0, getrlimit(RLIMIT_MEMLOCK, &lim));
  const auto cfg = model::ModelConfig::from_dir(MESHLM_GOLDEN_MODEL);
  {
    model::Stage plain(MESHLM_GOLDEN_MODEL, {0, cfg.n_layers}, so);
    EXPECT_EQ(plain.locked_bytes(), 0u);  // off by default
    // Without CAP_IPC_LOCK the locked-memory limit applies (often 8 MiB): then --mlock only
    // warns. Probe with a buffer of the weights' size whether this process may lock that much.
    std::vector<char> buf(plain.weight_bytes() + (1 << 20), 1);
    if (mlock(buf.data(), buf.size()) != 0)
      GTEST_SKIP() << "this process may not lock " << buf.size() << " bytes (RLIMIT_MEMLOCK "
                   << lim.rlim_cur << ", no CAP_IPC_LOCK)";
    munlock(buf.data(), buf.size());
  }
  so.lock_memory = true;
  for (auto [b, e] : {std::pair<int64_t, int64_t>{1, 3}, {0, cfg.n_layers}}) {
    SCOPED_TRACE(::testing::Message() << "layers " << b << "-" << e);
#if MESHLM_REAL_MLOCK
    const size_t before = locked_bytes_now();
#endif
    {
      model::Stage stage(MESHLM_GOLDEN_MODEL, {b, e}, so);
      EXPECT_GT(stage.weight_bytes(), 0u);
      EXPECT_EQ(stage.locked_bytes(), stage.weight_bytes());
#if MESHLM_REAL_MLOCK
      // Whole pages: at least the weights, at most a page more per matrix (and the embedding
      // shared by a tied LM head is locked once).
      const size_t now = locked_bytes_now() - before;
      EXPECT_GE(now, stage.weight_bytes());
      EXPECT_LE(now, stage.weight_bytes() + size_t(8 * (e - b) + 2) * 2 * 4096);
#endif
      // Still computes.
      std::vector<float> hidden(b == 0 ? 0 : size_t(2 * cfg.hidden), 0.5f), logits;
      std::vector<model::SeqChunk> c = {{1, 0, 2, true, false}};
      std::vector<int32_t> t = {1, 2};
      EXPECT_NO_THROW(stage.forward(c, t, hidden, logits));
    }
#if MESHLM_REAL_MLOCK
    EXPECT_EQ(locked_bytes_now(), before);  // unmapped with the stage: nothing stays locked
#endif
  }
}

}  // namespace
}  // namespace meshlm
