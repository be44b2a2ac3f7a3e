// split_for (model/tensor_split.h): the members' ranges cover every KV head, query head,
// intermediate element and vocabulary row exactly once, in rank order, in proportion to the
// shares; every member has a KV head; intermediate ranges are whole quantization blocks and not
// empty while there are enough blocks; the same inputs give the same split; bad groups are errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "model/config.h"
#include "model/tensor_split.h"

namespace meshlm::model {
namespace {

ModelConfig config(int64_t kv_heads = 8) {
  ModelConfig c;
  c.model_type = "qwen3";
  c.hidden = 256;
  c.n_layers = 2;
  c.n_kv_heads = kv_heads;
  c.n_heads = 2 * kv_heads;
  c.head_dim = 64;
  c.intermediate = 768 * 4;
  c.vocab = 1000;
  return c;
}

std::vector<TensorSplit> splits(const ModelConfig& c, const std::vector<double>& shares,
                                SplitBlocks blocks = {}) {
  std::vector<TensorSplit> s;
  for (int r = 0; r < int(shares.size()); ++r) s.push_back(split_for(c, shares, r, blocks));
  return s;
}

// Ranges [begin, end) of every member follow each other from 0 to total.
template <typename Begin, typename End>
void expect_cover(const std::vector<TensorSplit>& s, int64_t total, Begin b, End e,
                  const std::string& what) {
  int64_t at = 0;
  for (const auto& m : s) {
    EXPECT_EQ(b(m), at) << what << ", member " << m.rank;
    EXPECT_LE(b(m), e(m)) << what << ", member " << m.rank;
    at = e(m);
  }
  EXPECT_EQ(at, total) << what;
}

void expect_partition(const ModelConfig& c, const std::vector<TensorSplit>& s) {
  expect_cover(s, c.n_kv_heads, [](auto& m) { return m.kv_begin; }, [](auto& m) { return m.kv_end; }, "kv");
  expect_cover(s, c.n_heads, [](auto& m) { return m.q_begin; }, [](auto& m) { return m.q_end; }, "q");
  expect_cover(s, c.intermediate, [](auto& m) { return m.inter_begin; },
               [](auto& m) { return m.inter_end; }, "intermediate");
  expect_cover(s, c.moe_intermediate, [](auto& m) { return m.moe_begin; },
               [](auto& m) { return m.moe_end; }, "moe");
  expect_cover(s, c.shared_expert_intermediate, [](auto& m) { return m.shared_begin; },
               [](auto& m) { return m.shared_end; }, "shared");
  expect_cover(s, c.vocab, [](auto& m) { return m.vocab_begin; }, [](auto& m) { return m.vocab_end; }, "vocab");
  for (const auto& m : s) {
    EXPECT_GE(m.n_kv_heads(), 1) << "member " << m.rank;
    EXPECT_EQ(m.n_heads(), m.n_kv_heads() * (c.n_heads / c.n_kv_heads));
    EXPECT_EQ(m.size, int(s.size()));
  }
}

std::vector<int64_t> kv_counts(const std::vector<TensorSplit>& s) {
  std::vector<int64_t> n;
  for (const auto& m : s) n.push_back(m.n_kv_heads());
  return n;
}

TEST(TensorSplit, EveryMemberCountCoversEverythingOnce) {
  ModelConfig c = config();
  c.n_experts = 8;
  c.n_experts_used = 2;
  c.moe_intermediate = 96;
  c.shared_expert_intermediate = 160;
  for (int m = 1; m <= 8; ++m) {
    SCOPED_TRACE("members " + std::to_string(m));
    expect_partition(c, splits(c, std::vector<double>(size_t(m), 1.0)));
    expect_partition(c, splits(c, std::vector<double>(size_t(m), 1.0), {256, 32, 32}));
  }
}

TEST(TensorSplit, ThreeMembersOfEightKvHeads) {
  const ModelConfig c = config();
  const auto s = splits(c, {1, 1, 1});
  expect_partition(c, s);
  // 8/3 each: floors 2, the two leftover heads to the largest remainders (equal: lower ranks).
  EXPECT_EQ(kv_counts(s), (std::vector<int64_t>{3, 3, 2}));
  EXPECT_EQ(s[2].q_begin, 12);
  EXPECT_EQ(s[2].q_end, 16);
}

TEST(TensorSplit, FiveAndSixMembers) {
  const ModelConfig c = config();
  EXPECT_EQ(kv_counts(splits(c, {1, 1, 1, 1, 1})), (std::vector<int64_t>{2, 2, 2, 1, 1}));
  EXPECT_EQ(kv_counts(splits(c, {1, 1, 1, 1, 1, 1})), (std::vector<int64_t>{2, 2, 1, 1, 1, 1}));
  expect_partition(c, splits(c, {1, 1, 1, 1, 1}));
  expect_partition(c, splits(c, {1, 1, 1, 1, 1, 1}, {256, 1, 1}));
}

TEST(TensorSplit, ProportionalToShares) {
  const ModelConfig c = config();
  const auto s = splits(c, {3, 5});
  expect_partition(c, s);
  EXPECT_EQ(kv_counts(s), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(s[0].inter(), 3 * 3072 / 8);
  EXPECT_EQ(s[0].vocab(), 375);
  const auto t = splits(c, {1, 2, 3, 4});
  EXPECT_EQ(t[0].vocab(), 100);
  EXPECT_EQ(t[1].vocab(), 200);
  EXPECT_EQ(t[2].vocab(), 300);
  EXPECT_EQ(t[3].vocab(), 400);
  EXPECT_NEAR(double(t[3].inter()), 3072 * 0.4, 1.0);
  // Scale does not matter, only proportions.
  const auto u = splits(c, {0.3, 0.6, 0.9, 1.2});
  for (int r = 0; r < 4; ++r) EXPECT_EQ(u[size_t(r)].vocab(), t[size_t(r)].vocab());
}

TEST(TensorSplit, EveryMemberGetsAKvHead) {
  const ModelConfig c = config();
  // 8 * 1/101 rounds to 0: the small member takes one head from the large one.
  const auto s = splits(c, {1, 100});
  expect_partition(c, s);
  EXPECT_EQ(kv_counts(s), (std::vector<int64_t>{1, 7}));
  EXPECT_GT(s[0].inter(), 0);
  EXPECT_GT(s[0].vocab(), 0);
  expect_partition(c, splits(c, {100, 1, 1, 100, 1}));
}

TEST(TensorSplit, IntermediateOnBlockBoundaries) {
  ModelConfig c = config();
  c.intermediate = 768;  // 3 blocks of 256
  for (int m = 1; m <= 4; ++m) {
    const auto s = splits(c, std::vector<double>(size_t(m), 1.0), {256, 1, 1});
    expect_partition(c, s);
    for (const auto& x : s) {
      EXPECT_EQ(x.inter_begin % 256, 0) << m << " members";
      EXPECT_EQ(x.inter_end % 256, 0) << m << " members";
      // Not empty while there are as many blocks as members; with 4 members one must be.
      if (m <= 3) EXPECT_GT(x.inter(), 0) << m << " members, member " << x.rank;
    }
  }
  const auto four = splits(c, {1, 1, 1, 1}, {256, 1, 1});
  EXPECT_EQ(four[3].inter(), 0);
  // Shares {3, 5} of 3 blocks: 1.125 and 1.875 -> 1 and 2 blocks.
  const auto two = splits(c, {3, 5}, {256, 1, 1});
  EXPECT_EQ(two[0].inter_end, 256);
  // A dimension that is not a whole number of blocks: the last member's range is cut short.
  c.intermediate = 800;
  expect_partition(c, splits(c, {1, 1, 1}, {256, 1, 1}));
}

TEST(TensorSplit, Deterministic) {
  const ModelConfig c = config();
  const std::vector<double> shares = {0.7, 1.3, 2.9};
  for (int r = 0; r < 3; ++r) {
    const TensorSplit a = split_for(c, shares, r, 32), b = split_for(c, shares, r, 32);
    EXPECT_EQ(a.kv_begin, b.kv_begin);
    EXPECT_EQ(a.kv_end, b.kv_end);
    EXPECT_EQ(a.inter_begin, b.inter_begin);
    EXPECT_EQ(a.inter_end, b.inter_end);
    EXPECT_EQ(a.vocab_begin, b.vocab_begin);
    EXPECT_EQ(a.vocab_end, b.vocab_end);
  }
}

std::string error_of(const ModelConfig& c, const std::vector<double>& shares, int rank) {
  try {
    split_for(c, shares, rank, 1);
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "tensor-parallel");
    return e.message();
  }
  return "";
}

TEST(TensorSplit, Errors) {
  const ModelConfig c = config();
  const std::string more = error_of(c, std::vector<double>(9, 1.0), 0);
  EXPECT_NE(more.find("9 members"), std::string::npos) << more;
  EXPECT_NE(more.find("8 KV heads"), std::string::npos) << more;
  EXPECT_NE(error_of(c, {1, 1}, 2), "");
  EXPECT_NE(error_of(c, {1, 1}, -1), "");
  EXPECT_NE(error_of(c, {}, 0), "");
  EXPECT_NE(error_of(c, {1, 0}, 0).find("share"), std::string::npos);
  EXPECT_NE(error_of(c, {1, -2}, 0).find("share"), std::string::npos);
  EXPECT_EQ(error_of(c, {1, 1}, 1), "");
}

}  // namespace
}  // namespace meshlm::model
