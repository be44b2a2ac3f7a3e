// Tensor-parallel Stages (model/tensor_split.h, StageOptions::tensor_parallel): M members, each
// a thread with its own Stage holding its slices of the weights and a reducer over a real
// transport::Group on loopback TCP, give the logits of one whole Stage (within 1e-5 of the
// largest logit: the members' partial sums are added in another order) and the same greedy ids,
// on a prefill of two sequences in one batch and decode steps after it; every member returns the
// same bits, and a second run of a layout the same bits again. Models (make_tp_models.sh): a dense
// qwen3 (qk_norm, 8 KV heads: 2, 3, 4 members and the uneven {3, 5}), a qwen2 (q/k/v biases,
// untied head, vocabulary 500), a qwen3_moe, a qwen2_moe (shared expert) and a Q4_K_M GGUF
// (intermediate and wo split on 256-element blocks; with 4 members one has no MLP block at all).
// The ref backend (f32 activations) on the Q4_K_M file: within 1e-5 too. Members of a first and
// of a last stage of a pipeline match those stages. A member's weight bytes are its share of the
// split tensors plus the replicated ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/weight_format.h"
#include "model/config.h"
#include "model/model_files.h"
#include "model/schema.h"
#include "model/stage.h"
#include "runtime/sampler.h"
#include "transport/collective.h"
#include "transport/tcp_transport.h"
#include "transport/tp_reducer.h"

namespace meshlm {
namespace {

namespace fs = std::filesystem;
using model::Stage;
using model::StageOptions;

std::string model_path(const std::string& name) { return std::string(MESHLM_TP_MODELS) + "/" + name; }

#define REQUIRE_TP_MODELS()                                                                  \
  do {                                                                                       \
    if (!fs::exists(fs::path(MESHLM_TP_MODELS) / ".complete"))                               \
      GTEST_SKIP() << "no " << MESHLM_TP_MODELS;                                             \
  } while (0)

// What a stage computed: every logits row it returned, in order, and the greedy ids.
struct Outputs {
  std::vector<float> logits;
  std::vector<int32_t> ids;
  size_t weight_bytes = 0;
  size_t kv_bytes_per_token = 0;
};

std::vector<int32_t> prompt(int n, int salt, int64_t vocab) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(int32_t((i * 7919 + salt * 104729) % (vocab - 3) + 3));
  return ids;
}

// Prefill of two sequences in one batch (every position's logits for the first, the last one's
// for the second), then decode steps of both, one of the second alone, and both again, each
// feeding back the greedy id.
// given: a member without logits (not member 0, logits_on_every_member false) feeds back these
// ids, in order, as the pipeline feeds it member 0's.
Outputs drive(Stage& st, const std::vector<int32_t>* given = nullptr) {
  const int64_t V = st.config().vocab;
  Outputs out;
  std::vector<float> hidden, logits;
  auto step = [&](const std::vector<model::SeqChunk>& chunks, const std::vector<int32_t>& tokens) {
    const int64_t rows = st.forward(chunks, tokens, hidden, logits);
    EXPECT_EQ(given ? size_t{0} : size_t(rows * V), logits.size());
    out.logits.insert(out.logits.end(), logits.begin(), logits.end());
  };
  const auto a = prompt(7, 1, V), b = prompt(5, 2, V);
  std::vector<int32_t> tokens = a;
  tokens.insert(tokens.end(), b.begin(), b.end());
  step({{1, 0, 7, true, true}, {2, 0, 5, true, false}}, tokens);
  int32_t pos_a = 7, pos_b = 5;
  auto last = [&](int64_t row_from_end) {
    if (given) {
      const int32_t id = out.ids.size() < given->size() ? (*given)[out.ids.size()] : 0;
      out.ids.push_back(id);
      return id;
    }
    const int32_t id = runtime::argmax(logits.data() + logits.size() - size_t(row_from_end * V), V);
    out.ids.push_back(id);
    return id;
  };
  int32_t next_a = last(2), next_b = last(1);
  for (int i = 0; i < 5; ++i) {
    if (i == 2) {  // the second sequence alone
      step({{2, pos_b++, 1, true, false}}, {next_b});
      next_b = last(1);
      continue;
    }
    step({{1, pos_a++, 1, true, false}, {2, pos_b++, 1, true, false}}, {next_a, next_b});
    next_a = last(2);
    next_b = last(1);
  }
  out.weight_bytes = st.weight_bytes();
  out.kv_bytes_per_token = st.kv_bytes_per_token();
  return out;
}

StageOptions base_options(const std::string& backend = "cpu") {
  StageOptions o;
  o.backend = backend;
  o.threads = 1;
  o.max_context = 64;
  return o;
}

model::LayerRange whole(const std::string& dir) {
  return {0, model::ModelConfig::from_dir(dir).n_layers};
}

Outputs run_whole(const std::string& dir, const std::string& backend = "cpu") {
  Stage st(dir, whole(dir), base_options(backend));
  return drive(st);
}

// ---- members over loopback TCP ------------------------------------------------------------

using Links = std::vector<std::vector<std::unique_ptr<transport::TcpConnection>>>;

// A full mesh of n ranks over 127.0.0.1 (as in tests/transport/collective_test.cpp).
Links tcp_mesh(int n) {
  Links links(static_cast<size_t>(n));
  for (auto& l : links) l.resize(size_t(n));
  std::vector<std::unique_ptr<transport::TcpListener>> listeners;
  for (int i = 0; i < n; ++i)
    listeners.push_back(std::make_unique<transport::TcpListener>("127.0.0.1:0"));
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) {
      links[size_t(j)][size_t(i)] = transport::tcp_connect(listeners[size_t(i)]->address(), 10000);
      links[size_t(i)][size_t(j)] = listeners[size_t(i)]->accept(10000);
      if (!links[size_t(i)][size_t(j)]) throw std::runtime_error("tcp_mesh: no connection accepted");
    }
  return links;
}

struct Member {
  Outputs out;
  std::string error;
  model::TensorSplit split;
};

// Every member of a group with these shares on its own thread over loopback TCP, each loading
// its Stage and running fn(stage, rank, group) -> R (R has an `error` that a throw fills);
// the results in rank order. every_member: StageOptions::TensorParallel::logits_on_every_member.
// wire: the type the partial sums cross the links in (transport/tp_reducer.h).
template <typename R, typename F>
std::vector<R> on_members(const std::string& dir, model::LayerRange layers,
                          const std::vector<double>& shares, const std::string& backend,
                          bool every_member, WeightType wire, F fn) {
  const int n = int(shares.size());
  Links links = tcp_mesh(n);
  std::vector<std::future<R>> futures;
  for (int r = 0; r < n; ++r) {
    futures.push_back(std::async(std::launch::async, [&, r, conns = std::move(links[size_t(r)])]() mutable {
      R out;
      try {
        std::vector<std::unique_ptr<transport::Connection>> peers;
        for (auto& c : conns) peers.push_back(std::move(c));
        transport::GroupOptions go;
        go.timeout_ms = 30000;  // a failure guard only
        auto group = std::make_shared<transport::Group>(r, std::move(peers), go);
        StageOptions o = base_options(backend);
        o.tensor_parallel = StageOptions::TensorParallel{
            shares, r, std::make_shared<transport::GroupReducer>(group, wire), every_member};
        Stage st(dir, layers, o);
        out = fn(st, r, *group);
      } catch (const std::exception& e) {
        out.error = e.what();
      }
      return out;
    }));
  }
  std::vector<R> results;
  for (auto& f : futures) results.push_back(f.get());
  return results;
}

// Every member running drive(). every_member: each member gets the whole logits (and drives its
// own greedy ids from them); false: member 0 alone, the others feed back member 0's ids (as the
// pipeline does).
std::vector<Member> run_members(const std::string& dir, const std::vector<double>& shares,
                                const std::string& backend = "cpu", bool every_member = true,
                                const std::vector<int32_t>* ids = nullptr,
                                WeightType wire = WeightType::F32) {
  return on_members<Member>(dir, whole(dir), shares, backend, every_member, wire,
                            [&](Stage& st, int r, transport::Group&) {
                              Member m;
                              m.split = *st.tensor_split();
                              m.out = drive(st, !every_member && r != 0 ? ids : nullptr);
                              return m;
                            });
}

std::string bit_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return "sizes " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
  for (size_t i = 0; i < a.size(); ++i)
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i]))
      return "element " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " + std::to_string(b[i]);
  return "";
}

// max |a - ref| / max |ref|.
double relative_difference(const std::vector<float>& a, const std::vector<float>& ref) {
  double d = 0, m = 0;
  for (size_t i = 0; i < ref.size() && i < a.size(); ++i) {
    d = std::max(d, std::fabs(double(a[i]) - double(ref[i])));
    m = std::max(m, std::fabs(double(ref[i])));
  }
  return m > 0 ? d / m : d;
}

std::string layout_name(const std::vector<double>& shares) {
  std::string s = "{";
  for (size_t i = 0; i < shares.size(); ++i) s += (i ? "," : "") + std::to_string(int(shares[i]));
  return s + "}";
}

int64_t ref_kv_heads(const std::string& dir) { return model::ModelConfig::from_dir(dir).n_kv_heads; }

// How many logits rows (of `vocab`) differ by more than `tolerance` relatively.
size_t rows_beyond(const std::vector<float>& a, const std::vector<float>& ref, int64_t vocab,
                   double tolerance) {
  size_t n = 0;
  for (size_t r = 0; (r + 1) * size_t(vocab) <= ref.size() && (r + 1) * size_t(vocab) <= a.size(); ++r) {
    const auto row = [&](const std::vector<float>& v) {
      return std::vector<float>(v.begin() + long(r * size_t(vocab)), v.begin() + long((r + 1) * size_t(vocab)));
    };
    if (relative_difference(row(a), row(ref)) > tolerance) ++n;
  }
  return n;
}

// Members of each layout against the whole stage; the first layout twice (same bits).
// Quantized weights: the cpu kernels quantize each activation block to 8 bits (kernels_quant.h),
// a step function, so the members' other order of summation (a difference of ~1e-7) can move a
// value that sits on a rounding boundary to the next code, which changes that token's logits by
// ~1% from there on. For those models most rows must still be within 1e-5, the greedy ids the
// same, and the rest within `quantized_bound`.
void check_layouts(const std::string& name, const std::vector<std::vector<double>>& layouts,
                   double quantized_bound = 0, const std::string& backend = "cpu") {
  constexpr double tolerance = 1e-5;
  const std::string dir = model_path(name);
  const Outputs ref = run_whole(dir, backend);
  ASSERT_FALSE(ref.logits.empty());
  for (size_t li = 0; li < layouts.size(); ++li) {
    const auto& shares = layouts[li];
    SCOPED_TRACE(name + " " + layout_name(shares) + " " + backend);
    const std::vector<Member> members = run_members(dir, shares, backend);
    for (size_t r = 0; r < members.size(); ++r) ASSERT_EQ(members[r].error, "") << "member " << r;
    const double rel = relative_difference(members[0].out.logits, ref.logits);
    std::printf("[tp] %s %s (%s backend): max relative logit difference %.3g\n", name.c_str(),
                layout_name(shares).c_str(), backend.c_str(), rel);
    const int64_t V = model::ModelConfig::from_dir(dir).vocab;
    const size_t rows = ref.logits.size() / size_t(V);
    const size_t beyond = rows_beyond(members[0].out.logits, ref.logits, V, tolerance);
    if (beyond) std::printf("[tp]   %zu of %zu rows beyond %g\n", beyond, rows, tolerance);
    if (quantized_bound == 0) {
      EXPECT_LE(rel, tolerance);
    } else {
      EXPECT_LE(beyond * 8, rows) << "more than 1 row in 8 beyond " << tolerance;
      EXPECT_LE(rel, quantized_bound);
    }
    EXPECT_EQ(members[0].out.ids, ref.ids);
    for (size_t r = 1; r < members.size(); ++r)
      EXPECT_EQ(bit_difference(members[r].out.logits, members[0].out.logits), "") << "member " << r;
    // Each member caches its own KV heads only.
    for (const auto& m : members)
      EXPECT_EQ(m.out.kv_bytes_per_token * size_t(ref_kv_heads(dir)),
                ref.kv_bytes_per_token * size_t(m.split.n_kv_heads()));
    if (li == 0) {
      const std::vector<Member> again = run_members(dir, shares, backend);
      for (size_t r = 0; r < again.size(); ++r) {
        ASSERT_EQ(again[r].error, "");
        EXPECT_EQ(bit_difference(again[r].out.logits, members[r].out.logits), "") << "member " << r;
      }
    }
  }
}

TEST(TpStage, Qwen3Dense) {
  REQUIRE_TP_MODELS();
  check_layouts("qwen3", {{1, 1, 1}, {1, 1}, {1, 1, 1, 1}, {3, 5}});
}

TEST(TpStage, Qwen2QkvBias) {
  REQUIRE_TP_MODELS();
  check_layouts("qwen2", {{1, 1}, {1, 1, 1}, {1, 1, 1, 1}, {1, 3}});
}

TEST(TpStage, Qwen3Moe) {
  REQUIRE_TP_MODELS();
  check_layouts("qwen3_moe", {{1, 1}, {1, 1, 1}, {1, 3}});
}

TEST(TpStage, Qwen2MoeSharedExpert) {
  REQUIRE_TP_MODELS();
  check_layouts("qwen2_moe", {{1, 1}, {1, 2, 1}});
}

TEST(TpStage, QuantizedGguf) {
  REQUIRE_TP_MODELS();
  check_layouts("q4km.gguf", {{1, 1}, {1, 1, 1}, {1, 1, 1, 1}, {1, 3}}, 0.05);
}

// The ref backend dequantizes the weights and keeps the activations f32: the quantized slices
// (whole 256-element blocks, copied) then give the whole stage's logits within 1e-5 everywhere.
TEST(TpStage, QuantizedGgufRefBackend) {
  REQUIRE_TP_MODELS();
  check_layouts("q4km.gguf", {{1, 1, 1}, {1, 1, 1, 1}, {1, 3}}, 0, "ref");
}

// Tensor-parallel stages that are parts of a pipeline: members of layers [0, 1) return the
// whole first stage's activations (no logits), members of [1, 2) take them and return the last
// stage's logits (the tied head: only the embedding's vocabulary rows, no embedding table).
TEST(TpStage, FirstAndLastStageOfAPipeline) {
  REQUIRE_TP_MODELS();
  const std::string dir = model_path("qwen3");
  const int64_t V = model::ModelConfig::from_dir(dir).vocab;
  const auto a = prompt(6, 3, V);
  const std::vector<model::SeqChunk> chunks = {{7, 0, 6, true, false}};
  auto run_stage = [&](model::LayerRange layers, std::vector<float> hidden, const std::vector<double>& shares) {
    std::vector<float> logits;
    if (shares.empty()) {
      Stage st(dir, layers, base_options());
      st.forward(chunks, a, hidden, logits);
      return std::make_pair(hidden, logits);
    }
    struct Run {
      std::vector<float> hidden, logits;
      std::string error;
    };
    const std::vector<Run> results = on_members<Run>(
        dir, layers, shares, "cpu", true, WeightType::F32, [&](Stage& st, int, transport::Group&) {
          Run run{hidden, {}, ""};
          st.forward(chunks, a, run.hidden, run.logits);
          return run;
        });
    for (size_t r = 0; r < results.size(); ++r) EXPECT_EQ(results[r].error, "") << "member " << r;
    for (size_t r = 1; r < results.size(); ++r) {
      EXPECT_EQ(bit_difference(results[r].hidden, results[0].hidden), "") << "member " << r;
      EXPECT_EQ(bit_difference(results[r].logits, results[0].logits), "") << "member " << r;
    }
    return std::make_pair(results[0].hidden, results[0].logits);
  };
  const auto ref0 = run_stage({0, 1}, {}, {});
  const auto tp0 = run_stage({0, 1}, {}, {1, 2});
  EXPECT_TRUE(tp0.second.empty());
  const double rel0 = relative_difference(tp0.first, ref0.first);
  std::printf("[tp] qwen3 layers [0, 1) {1,2}: max relative activation difference %.3g\n", rel0);
  EXPECT_LE(rel0, 1e-5);
  const auto ref1 = run_stage({1, 2}, ref0.first, {});
  const auto tp1 = run_stage({1, 2}, ref0.first, {2, 1, 1});
  ASSERT_EQ(tp1.second.size(), size_t(V));
  const double rel1 = relative_difference(tp1.second, ref1.second);
  std::printf("[tp] qwen3 layers [1, 2) {2,1,1}: max relative logit difference %.3g\n", rel1);
  EXPECT_LE(rel1, 1e-5);
}

// One member: the same computation as a whole stage, so the same bits.
struct LocalReducer : model::TpReducer {
  void all_reduce_sum(float*, size_t) override {}
  std::vector<float> all_gather(std::span<const float> mine, std::vector<size_t>* counts) override {
    if (counts) *counts = {mine.size()};
    return {mine.begin(), mine.end()};
  }
  std::vector<float> gather_to_first(std::span<const float> mine,
                                     std::vector<size_t>* counts) override {
    return all_gather(mine, counts);
  }
};

// The pipeline's default: the logits are gathered to member 0 alone (the member that samples),
// with the bits the all-gather gives it; the other members return none.
TEST(TpStage, LogitsAreGatheredToMemberZeroAlone) {
  REQUIRE_TP_MODELS();
  const std::string dir = model_path("qwen3");
  const Outputs ref = run_whole(dir);
  const std::vector<double> shares = {1, 2, 1};
  const std::vector<Member> every = run_members(dir, shares);
  const std::vector<Member> first = run_members(dir, shares, "cpu", false, &ref.ids);
  for (size_t r = 0; r < first.size(); ++r) ASSERT_EQ(first[r].error, "") << "member " << r;
  EXPECT_EQ(bit_difference(first[0].out.logits, every[0].out.logits), "");
  EXPECT_EQ(first[0].out.ids, ref.ids);
  for (size_t r = 1; r < first.size(); ++r) EXPECT_TRUE(first[r].out.logits.empty()) << r;
}

// What member 0 returned for one batch with and one without SeqChunk::top_logits.
struct TopRun {
  std::vector<float> hinted, whole;
  std::vector<double> hinted_log_z, whole_log_z;
  uint64_t hinted_bytes = 0, whole_bytes = 0;  // what the member sent in each forward
  int64_t vocab = 0;                           // the member's vocabulary rows
  std::string error;
};

// A chunk that asks for its top values alone gets, on member 0, every member's k best values at
// their ids and -inf elsewhere (so the whole row's k best among them) and, with top_log_z, the
// whole row's log-sum-exp; rows of other chunks in the same batch stay whole, all_logits rows
// whatever they ask. Uneven members {1, 2, 1}; the others return no logits.
TEST(TpStage, TopLogitsMoveOnlyEachMembersBestValues) {
  REQUIRE_TP_MODELS();
  const std::string dir = model_path("qwen3");
  const int64_t V = model::ModelConfig::from_dir(dir).vocab;
  const auto a = prompt(6, 3, V), b = prompt(4, 4, V), c = prompt(3, 5, V);
  std::vector<int32_t> tokens = a;
  tokens.insert(tokens.end(), b.begin(), b.end());
  tokens.insert(tokens.end(), c.begin(), c.end());
  auto chunks = [](bool hint) {
    std::vector<model::SeqChunk> ch(3);
    ch[0] = {1, 0, 6, true, true};
    ch[1] = {2, 0, 4, true, false};
    ch[2] = {3, 0, 3, true, false};
    if (hint) {
      ch[0].top_logits = 2;  // all_logits: whole rows anyway
      ch[1].top_logits = 5;
      ch[1].top_log_z = true;
      ch[2].top_logits = 1;
    }
    return ch;
  };
  const std::vector<double> shares = {1, 2, 1};
  const int n = int(shares.size());
  const std::vector<TopRun> runs = on_members<TopRun>(
      dir, whole(dir), shares, "cpu", false, WeightType::F32,
      [&](Stage& st, int, transport::Group& group) {
        TopRun out;
        std::vector<float> hidden;
        out.vocab = st.tensor_split()->vocab();
        st.forward(chunks(true), tokens, hidden, out.hinted, &out.hinted_log_z);
        out.hinted_bytes = group.stats().bytes_sent;
        st.release_all();
        hidden.clear();
        st.forward(chunks(false), tokens, hidden, out.whole, &out.whole_log_z);
        out.whole_bytes = group.stats().bytes_sent - out.hinted_bytes;
        return out;
      });
  for (int r = 0; r < n; ++r) ASSERT_EQ(runs[size_t(r)].error, "") << "member " << r;
  for (int r = 1; r < n; ++r) {
    const TopRun& m = runs[size_t(r)];
    EXPECT_TRUE(m.hinted.empty()) << "member " << r;
    // The two hinted rows: 5 (id, value) pairs + the log-sum-exp, and 1 pair, instead of two
    // slices of the vocabulary; the all-reduces of the layers are the same in both forwards.
    EXPECT_EQ(m.whole_bytes - m.hinted_bytes, (2 * uint64_t(m.vocab) - (2 * 5 + 2) - 2) * 4)
        << "member " << r;
  }
  const TopRun& m0 = runs[0];
  const size_t rows = 8;
  ASSERT_EQ(m0.whole.size(), rows * size_t(V));
  ASSERT_EQ(m0.hinted.size(), rows * size_t(V));
  ASSERT_EQ(m0.hinted_log_z.size(), rows);
  ASSERT_EQ(m0.whole_log_z.size(), rows);
  auto row = [&](const std::vector<float>& v, size_t i) {
    return std::vector<float>(v.begin() + long(i * size_t(V)), v.begin() + long((i + 1) * size_t(V)));
  };
  for (size_t i = 0; i < 6; ++i)
    EXPECT_EQ(bit_difference(row(m0.hinted, i), row(m0.whole, i)), "") << "all_logits row " << i;
  for (size_t i = 0; i < rows; ++i) {
    EXPECT_TRUE(std::isnan(m0.whole_log_z[i])) << i;
    if (i != 6) {
      EXPECT_TRUE(std::isnan(m0.hinted_log_z[i])) << i;
    }
  }
  for (const auto& [i, k] : std::vector<std::pair<size_t, int>>{{6, 5}, {7, 1}}) {
    const std::vector<float> h = row(m0.hinted, i), w = row(m0.whole, i);
    size_t finite = 0;
    for (int64_t id = 0; id < V; ++id) {
      if (std::isinf(h[size_t(id)]) && h[size_t(id)] < 0) continue;
      ++finite;
      EXPECT_EQ(std::bit_cast<uint32_t>(h[size_t(id)]), std::bit_cast<uint32_t>(w[size_t(id)])) << id;
    }
    EXPECT_EQ(finite, size_t(k * n)) << "row " << i << ": each member's " << k << " best";
    std::vector<int32_t> idx(static_cast<size_t>(V));
    for (int64_t id = 0; id < V; ++id) idx[size_t(id)] = int32_t(id);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t x, int32_t y) {
      return w[size_t(x)] > w[size_t(y)] || (w[size_t(x)] == w[size_t(y)] && x < y);
    });
    for (int j = 0; j < k; ++j)
      EXPECT_EQ(h[size_t(idx[size_t(j)])], w[size_t(idx[size_t(j)])]) << "row " << i << " rank " << j;
    EXPECT_EQ(runtime::argmax(h.data(), V), runtime::argmax(w.data(), V)) << "row " << i;
    if (i != 6) continue;
    double mx = *std::max_element(w.begin(), w.end()), z = 0;
    for (float x : w) z += std::exp(double(x) - mx);
    EXPECT_NEAR(m0.hinted_log_z[i], std::log(z) + mx, 1e-9 * std::fabs(std::log(z) + mx));
  }
}

// --wire for the all-reduces: with bf16, f16 or q8_0 partial sums every member still gets the
// same bits (each decodes every contribution, its own included, and adds them in rank order),
// runs repeat them, and the logits stay near one whole stage's (q8_0 the farthest).
TEST(TpStage, WireTypesKeepTheMembersIdentical) {
  REQUIRE_TP_MODELS();
  const std::string dir = model_path("qwen3");
  const Outputs ref = run_whole(dir);
  const std::vector<double> shares = {1, 2, 1};
  for (const auto& [wire, bound] : std::vector<std::pair<WeightType, double>>{
           {WeightType::BF16, 1e-2}, {WeightType::F16, 2e-3}, {WeightType::Q8_0, 5e-2}}) {
    SCOPED_TRACE(std::string(formats::name(wire)));
    const std::vector<Member> members = run_members(dir, shares, "cpu", true, nullptr, wire);
    for (size_t r = 0; r < members.size(); ++r) ASSERT_EQ(members[r].error, "") << "member " << r;
    for (size_t r = 1; r < members.size(); ++r)
      EXPECT_EQ(bit_difference(members[r].out.logits, members[0].out.logits), "") << "member " << r;
    const double rel = relative_difference(members[0].out.logits, ref.logits);
    std::printf("[tp] wire %s: max relative logit difference %.3g\n",
                std::string(formats::name(wire)).c_str(), rel);
    EXPECT_GT(rel, 0.0) << "the partial sums were not rounded";
    EXPECT_LE(rel, bound);
    const std::vector<Member> again = run_members(dir, shares, "cpu", true, nullptr, wire);
    ASSERT_EQ(again[0].error, "");
    EXPECT_EQ(bit_difference(again[0].out.logits, members[0].out.logits), "");
  }
}

TEST(TpStage, OneMemberIsTheWholeStage) {
  REQUIRE_TP_MODELS();
  for (const std::string name : {"qwen3", "qwen2_moe", "q4km.gguf"}) {
    const std::string dir = model_path(name);
    StageOptions o = base_options();
    o.tensor_parallel = StageOptions::TensorParallel{{1.0}, 0, std::make_shared<LocalReducer>()};
    Stage st(dir, whole(dir), o);
    const Outputs one = drive(st), ref = run_whole(dir);
    EXPECT_EQ(bit_difference(one.logits, ref.logits), "") << name;
    size_t embed = 0;
    const auto files = model::ModelFiles::open(dir);
    for (const auto& d : model::model_tensors(st.config()))
      if (d.role == model::TensorRole::Embed) embed = size_t(files->tensor_bytes(d));
    EXPECT_EQ(one.weight_bytes, ref.weight_bytes + (st.config().tie_embeddings ? embed : 0))
        << name << ": a tied head is a copy of the embedding's rows";
  }
}

// A member holds its share of the split tensors plus the replicated ones (the embedding; the
// norms are not counted as weight bytes).
TEST(TpStage, WeightBytesAreTheMembersShare) {
  REQUIRE_TP_MODELS();
  const std::string dir = model_path("qwen2");  // BF16, untied: embedding + head + layers
  const Outputs ref = run_whole(dir);
  const model::ModelConfig c = model::ModelConfig::from_dir(dir);
  const size_t embed = size_t(c.vocab * c.hidden) * 2;
  const size_t split_bytes = ref.weight_bytes - embed;  // head + layers
  for (const std::vector<double>& shares : {std::vector<double>{1, 1}, {1, 1, 1, 1}, {1, 3}}) {
    const std::vector<Member> members = run_members(dir, shares);
    double total_share = 0;
    for (double s : shares) total_share += s;
    size_t sum = 0;
    for (size_t r = 0; r < members.size(); ++r) {
      ASSERT_EQ(members[r].error, "");
      const double expected = double(embed) + double(split_bytes) * shares[r] / total_share;
      const double got = double(members[r].out.weight_bytes);
      EXPECT_NEAR(got, expected, 0.05 * double(split_bytes))
          << layout_name(shares) << " member " << r;
      sum += members[r].out.weight_bytes;
    }
    // The split tensors are held exactly once across the members.
    EXPECT_EQ(sum, ref.weight_bytes + (members.size() - 1) * embed) << layout_name(shares);
  }
}

TEST(TpStage, MoreMembersThanKvHeadsIsAnError) {
  REQUIRE_TP_MODELS();
  const std::string dir = model_path("qwen2");  // 4 KV heads
  StageOptions o = base_options();
  o.tensor_parallel =
      StageOptions::TensorParallel{std::vector<double>(5, 1.0), 0, std::make_shared<LocalReducer>()};
  try {
    Stage st(dir, whole(dir), o);
    FAIL() << "5 members of 4 KV heads were accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "tensor-parallel");
    EXPECT_NE(e.message().find("4 KV heads"), std::string::npos) << e.what();
  }
  o.tensor_parallel->shares = {1, 1};
  o.tensor_parallel->reducer = nullptr;
  EXPECT_THROW(Stage(dir, whole(dir), o), Error);
}

// Q4_K blocks are 256 elements; a KV head of this model owns 64 wo columns, so no split of its
// heads among members is whole blocks: an error that names the tensor and the block.
TEST(TpStage, HeadsThatCutAQuantizationBlockAreAnError) {
  REQUIRE_TP_MODELS();
  const std::string dir = model_path("q4km-narrow.gguf");
  StageOptions o = base_options();
  o.tensor_parallel = StageOptions::TensorParallel{{1, 1}, 0, std::make_shared<LocalReducer>()};
  try {
    Stage st(dir, whole(dir), o);
    FAIL() << "a split inside a Q4_K block was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "tensor-parallel");
    EXPECT_NE(e.message().find("attn_output"), std::string::npos) << e.what();
    EXPECT_NE(e.message().find("blocks of 256"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace meshlm
