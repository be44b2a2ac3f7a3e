#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

namespace meshlm::runtime {
namespace {

std::vector<float> logits_of(std::initializer_list<float> v) { return std::vector<float>(v); }

int32_t sample_once(SamplingParams p, std::vector<float> l) {
  SequenceSampler s(p);
  return s.sample(l.data(), int64_t(l.size())).token;
}

TEST(Sampler, GreedyIsArgmaxFirstOnTies) {
  SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(sample_once(p, logits_of({1, 3, 3, 2})), 1);
  EXPECT_EQ(argmax(logits_of({-5, -1, -3}).data(), 3), 1);
}

TEST(Sampler, SetSamplesUnregisteredSequencesGreedily) {
  // A sequence never add()ed (meshlm bench, raw pipeline users) is sampled greedily: with a flat
  // distribution, temperature 1 would pick other tokens in some of 200 draws.
  SamplerSet set;
  const int64_t vocab = 64;
  std::vector<float> l(size_t(vocab), 1.0f);
  l[17] = 1.01f;
  for (int64_t seq = 0; seq < 200; ++seq) {
    model::SeqChunk ch{seq, 0, 1, true, false};
    const int32_t tok = 3;
    std::vector<float> row = l;
    auto out = set.sample_batch(std::span(&ch, 1), std::span(&tok, 1), row.data(), vocab);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].second.token, 17);
  }
}

TEST(Sampler, TruncationsThatLeaveOneTokenAreGreedy) {
  std::vector<float> l = {0.1f, 2.0f, 1.9f, -1.0f, 0.5f};
  for (int i = 0; i < 50; ++i) {
    SamplingParams p;
    p.temperature = 1.5f;
    p.seed = uint64_t(i);
    p.has_seed = true;
    p.top_k = 1;
    EXPECT_EQ(sample_once(p, l), 1);
    p.top_k = 0;
    p.top_p = 1e-6f;
    EXPECT_EQ(sample_once(p, l), 1);
    p.top_p = 1.0f;
    p.min_p = 0.999f;
    EXPECT_EQ(sample_once(p, l), 1);
  }
}

TEST(Sampler, SeedReproducesAndFrequenciesFollowSoftmax) {
  std::vector<float> l = {0.0f, 1.0f, 2.0f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  p.has_seed = true;
  SequenceSampler a(p), b(p);
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    auto la = l, lb = l;
    int32_t x = a.sample(la.data(), 3).token;
    EXPECT_EQ(x, b.sample(lb.data(), 3).token);
    ++counts[x];
  }
  double z = 1 + std::exp(1.0) + std::exp(2.0);
  for (int id = 0; id < 3; ++id) EXPECT_NEAR(counts[id] / double(n), std::exp(double(id)) / z, 0.015) << id;
}

TEST(Sampler, TopPKeepsSmallestSetAboveMass) {
  // probabilities ~ 0.64, 0.24, 0.09, 0.03: top_p 0.8 keeps the first two only.
  std::vector<float> l = {3.0f, 2.0f, 1.0f, 0.0f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.8f;
  std::map<int32_t, int> counts;
  for (int i = 0; i < 3000; ++i) {
    p.seed = uint64_t(i);
    p.has_seed = true;
    ++counts[sample_once(p, l)];
  }
  EXPECT_EQ(counts[2] + counts[3], 0);
  EXPECT_GT(counts[1], 500);
}

TEST(Sampler, LargeVocabularyTopP) {
  std::vector<float> l(151936);
  for (size_t i = 0; i < l.size(); ++i) l[i] = float((i * 2654435761u) % 1000) / 100.0f;
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_p = 0.9f;
  p.seed = 3;
  p.has_seed = true;
  int32_t t = sample_once(p, l);
  EXPECT_GT(l[size_t(t)], 8.0f);  // only the top of the distribution survives top-p
}

TEST(Sampler, PenaltiesChangeTheChoice) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  SequenceSampler s(p);
  int32_t prompt[] = {0};
  s.observe_prompt(prompt, 1);
  auto l = logits_of({2.0f, 1.5f});
  EXPECT_EQ(s.sample(l.data(), 2).token, 1);  // 2.0 / 2 = 1.0 < 1.5
  SamplingParams q;
  q.temperature = 0;
  q.presence_penalty = 1.0f;
  SequenceSampler t(q);
  auto l1 = logits_of({1.0f, 0.5f});
  EXPECT_EQ(t.sample(l1.data(), 2).token, 0);
  auto l2 = logits_of({1.0f, 0.5f});
  EXPECT_EQ(t.sample(l2.data(), 2).token, 1);  // token 0 was generated: 1.0 - 1.0 < 0.5
}

TEST(Sampler, LogprobsOfRawDistribution) {
  SamplingParams p;
  p.temperature = 0;
  p.logprobs = true;
  p.top_logprobs = 2;
  SequenceSampler s(p);
  auto l = logits_of({0.0f, std::log(3.0f)});
  auto r = s.sample(l.data(), 2);
  EXPECT_EQ(r.token, 1);
  EXPECT_NEAR(r.logprob, std::log(0.75), 1e-5);
  ASSERT_EQ(r.top.size(), 2u);
  EXPECT_EQ(r.top[1].first, 0);
  EXPECT_NEAR(r.top[1].second, std::log(0.25), 1e-5);
}

// A sequence replayed after a lost stage: a fresh SamplerSet gets prompt + generated[:-1] as one
// prefill (no sample), then decodes from the last token. With a seed, temperature, top-p and
// penalties, the tokens it samples from there on equal the undisturbed run's: the random number
// is a function of (seed, position) and the penalty history is rebuilt from positions.
TEST(Sampler, ReplayFromTokensSamplesTheSameContinuation) {
  const int64_t vocab = 50;
  auto logits_at = [&](int64_t pos) {  // the "model": logits depend on the position only
    std::vector<float> l(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) l[size_t(i)] = float(((i * 7 + pos * 13) % 17)) / 4.0f;
    return l;
  };
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_p = 0.95f;
  p.presence_penalty = 0.7f;
  p.frequency_penalty = 0.3f;
  p.repetition_penalty = 1.2f;
  p.seed = 1234;
  p.has_seed = true;
  const std::vector<int32_t> prompt = {3, 9, 9, 27, 4};
  p.prompt_tokens = int64_t(prompt.size());
  const int steps = 40, cut = 17;  // the stage is lost after `cut` tokens

  auto step = [&](SamplerSet& set, int64_t pos, std::vector<int32_t> tokens, bool sample) {
    model::SeqChunk ch{7, int32_t(pos), int32_t(tokens.size()), sample, false};
    auto l = logits_at(pos + int64_t(tokens.size()) - 1);
    auto out = set.sample_batch(std::span(&ch, 1), tokens, l.data(), vocab);
    return out.empty() ? -1 : out[0].second.token;
  };
  SamplerSet a;
  a.add(7, p);
  std::vector<int32_t> ref = {step(a, 0, prompt, true)};
  for (int i = 1; i < steps; ++i)
    ref.push_back(step(a, int64_t(prompt.size()) + i - 1, {ref.back()}, true));

  SamplerSet b;
  b.add(7, p);
  std::vector<int32_t> replay = prompt;
  replay.insert(replay.end(), ref.begin(), ref.begin() + cut - 1);
  EXPECT_EQ(step(b, 0, replay, false), -1);
  std::vector<int32_t> got(ref.begin(), ref.begin() + cut);
  for (int i = cut; i < steps; ++i)
    got.push_back(step(b, int64_t(prompt.size()) + i - 1, {got.back()}, true));
  EXPECT_EQ(got, ref);
  // Not vacuous: a different seed gives another continuation.
  SamplerSet c;
  p.seed = 99;
  c.add(7, p);
  std::vector<int32_t> other = {step(c, 0, prompt, true)};
  for (int i = 1; i < steps; ++i)
    other.push_back(step(c, int64_t(prompt.size()) + i - 1, {other.back()}, true));
  EXPECT_NE(other, ref);
}

TEST(Sampler, MaskRefusesTokensUnderEveryStrategy) {
  // 130 tokens (three mask words, the last one partial); allowed: 5, 64, 100, 129.
  const int64_t vocab = 130;
  TokenMask mask(3, 0);
  for (int id : {5, 64, 100, 129}) mask[size_t(id / 64)] |= uint64_t{1} << (id % 64);
  std::vector<float> base(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) base[size_t(i)] = std::sin(float(i)) * 3;  // best: not allowed
  base[7] = 50;
  auto best_allowed = [&] {
    int best = 5;
    for (int id : {64, 100, 129})
      if (base[size_t(id)] > base[size_t(best)]) best = id;
    return best;
  };
  SamplingParams greedy;
  greedy.temperature = 0;
  {
    SequenceSampler s(greedy);
    auto l = base;
    EXPECT_EQ(s.sample(l.data(), vocab, 0, &mask).token, best_allowed());
  }
  std::vector<SamplingParams> ps(5);
  ps[0].temperature = 1.0f;
  ps[1].temperature = 2.0f, ps[1].top_k = 40;  // more candidates than allowed tokens
  ps[2].temperature = 1.5f, ps[2].top_p = 0.9f;
  ps[3].temperature = 1.0f, ps[3].min_p = 0.01f;
  ps[4].temperature = 1.0f, ps[4].repetition_penalty = 1.3f, ps[4].presence_penalty = 1.0f;
  for (auto& p : ps) {
    p.seed = 11;
    p.has_seed = true;
    p.logprobs = true;
    SequenceSampler s(p);
    std::map<int32_t, int> seen;
    for (int64_t pos = 0; pos < 400; ++pos) {
      auto l = base;
      auto t = s.sample(l.data(), vocab, pos, &mask);
      ++seen[t.token];
      EXPECT_TRUE(std::isfinite(t.logprob));
    }
    for (auto& [id, n] : seen) EXPECT_TRUE(id == 5 || id == 64 || id == 100 || id == 129) << id;
  }
  // A short mask refuses the ids past its end; one allowed token is always the one sampled.
  TokenMask only5(1, uint64_t{1} << 5);
  SamplingParams hot;
  hot.temperature = 2.0f;
  SequenceSampler s(hot);
  for (int64_t pos = 0; pos < 50; ++pos) {
    auto l = base;
    EXPECT_EQ(s.sample(l.data(), vocab, pos, &only5).token, 5);
  }
}

TEST(Sampler, MaskedSamplingEqualsRefusedTokensAtMinusInfinity) {
  // A sparse mask samples over the allowed ids only, a dense one writes -inf over the refused:
  // both draw what the unmasked sampler draws from logits where refused tokens are -inf.
  const int64_t vocab = 1000;
  std::vector<float> base(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) base[size_t(i)] = std::cos(float(i) * 0.37f) * 4;
  for (int density : {3, 60, 900}) {  // allowed ids: every id % 1000 < density (spread)
    TokenMask mask(16, 0);
    std::vector<float> ref = base;
    for (int64_t i = 0; i < vocab; ++i) {
      if ((i * 7919) % 1000 < density)
        mask[size_t(i / 64)] |= uint64_t{1} << (i % 64);
      else
        ref[size_t(i)] = -std::numeric_limits<float>::infinity();
    }
    std::vector<SamplingParams> ps(5);
    ps[0].temperature = 0.0f;
    ps[1].temperature = 1.0f;
    ps[2].temperature = 0.7f, ps[2].top_k = 20;
    ps[3].temperature = 1.3f, ps[3].top_p = 0.8f;
    ps[4].temperature = 1.0f, ps[4].min_p = 0.05f, ps[4].top_k = 50;
    for (auto p : ps) {
      p.seed = 5;
      p.has_seed = true;
      SequenceSampler masked(p), plain(p);
      for (int64_t pos = 0; pos < 100; ++pos) {
        auto a = base, b = ref;
        const int32_t x = masked.sample(a.data(), vocab, pos, &mask).token;
        const int32_t y = plain.sample(b.data(), vocab, pos).token;
        ASSERT_EQ(x, y) << "density " << density << " temp " << p.temperature << " pos " << pos;
        ASSERT_TRUE((mask[size_t(x / 64)] >> (x % 64)) & 1);
      }
    }
  }
}

TEST(Sampler, SetAppliesEachSequencesMask) {
  SamplerSet set;
  const int64_t vocab = 64;
  std::vector<float> rows(size_t(vocab * 2), 0.0f);
  rows[3] = 9;             // row 0's best
  rows[size_t(vocab) + 3] = 9;  // row 1's best
  model::SeqChunk ch[2] = {{1, 0, 1, true, false}, {2, 0, 1, true, false}};
  const int32_t toks[2] = {0, 0};
  std::vector<SeqMask> masks = {{2, std::make_shared<TokenMask>(TokenMask{uint64_t{1} << 40})}};
  auto out = set.sample_batch(ch, toks, rows.data(), vocab, masks);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].second.token, 3);   // unconstrained
  EXPECT_EQ(out[1].second.token, 40);  // only 40 allowed
}

// What a tensor-parallel group hands the sampler when a chunk asks for its top values alone
// (SeqChunk::top_logits): each vocabulary slice's k best values, -inf elsewhere, and the whole
// row's log-sum-exp. For every parameter set top_logits_needed accepts, the draws and the
// logprobs are those of the whole row.
TEST(Sampler, TopValuesOfEachSliceSampleAsTheWholeRow) {
  const int64_t vocab = 3000;
  const std::vector<int64_t> slices = {0, 700, 1900, vocab};  // three uneven members
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p, min_p;
    int32_t top_logprobs;
    bool logprobs;
  };
  const std::vector<Case> cases = {{0.0f, 0, 1.0f, 0.0f, 0, false}, {0.0f, 0, 1.0f, 0.0f, 5, true},
                                   {0.8f, 40, 1.0f, 0.0f, 0, false}, {1.0f, 20, 0.9f, 0.0f, 3, true},
                                   {0.7f, 50, 0.95f, 0.05f, 0, true}, {1.3f, 1, 1.0f, 0.0f, 0, false}};
  for (const Case& c : cases) {
    SamplingParams p;
    p.temperature = c.temperature;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.top_logprobs = c.top_logprobs;
    p.logprobs = c.logprobs;
    p.seed = 99;
    p.has_seed = true;
    bool log_z = false;
    const int32_t k = top_logits_needed(p, false, &log_z);
    ASSERT_GT(k, 0);
    EXPECT_EQ(log_z, c.logprobs || c.top_logprobs > 0);
    SequenceSampler whole(p), top(p);
    for (int64_t pos = 0; pos < 300; ++pos) {
      std::vector<float> row(static_cast<size_t>(vocab));
      for (auto& x : row) x = nd(rng);
      if (pos % 7 == 0) row[size_t(pos % vocab)] = row[size_t((pos + 1) % vocab)];  // ties
      std::vector<float> sparse(row.size(), -std::numeric_limits<float>::infinity());
      double z = 0, mx = *std::max_element(row.begin(), row.end());
      for (float x : row) z += std::exp(double(x) - mx);
      for (size_t s = 0; s + 1 < slices.size(); ++s) {
        std::vector<int32_t> idx;
        for (int64_t i = slices[s]; i < slices[s + 1]; ++i) idx.push_back(int32_t(i));
        std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
          return row[size_t(a)] > row[size_t(b)] || (row[size_t(a)] == row[size_t(b)] && a < b);
        });
        for (int32_t j = 0; j < k; ++j) sparse[size_t(idx[size_t(j)])] = row[size_t(idx[size_t(j)])];
      }
      std::vector<float> full = row;
      const SampledToken a = whole.sample(full.data(), vocab, pos);
      const SampledToken b = top.sample(sparse.data(), vocab, pos, nullptr,
                                        log_z ? std::log(z) + mx : std::nan(""));
      ASSERT_EQ(a.token, b.token) << "T " << c.temperature << " top_k " << c.top_k << " pos " << pos;
      if (!log_z) continue;
      EXPECT_NEAR(a.logprob, b.logprob, 1e-5);
      ASSERT_EQ(a.top.size(), b.top.size());
      for (size_t i = 0; i < a.top.size(); ++i) {
        EXPECT_EQ(a.top[i].first, b.top[i].first);
        EXPECT_NEAR(a.top[i].second, b.top[i].second, 1e-5);
      }
    }
  }
}

TEST(Sampler, TopLogitsNeededOnlyWhereTheTopDecides) {
  bool log_z = true;
  SamplingParams greedy;
  greedy.temperature = 0;
  EXPECT_EQ(top_logits_needed(greedy, false, &log_z), 1);
  EXPECT_FALSE(log_z);
  EXPECT_EQ(top_logits_needed(greedy, true, &log_z), 0) << "a mask can refuse the best";
  SamplingParams p = greedy;
  p.top_logprobs = 7;
  EXPECT_EQ(top_logits_needed(p, false, &log_z), 7);
  EXPECT_TRUE(log_z);
  p = greedy;
  p.repetition_penalty = 1.1f;
  EXPECT_EQ(top_logits_needed(p, false, &log_z), 0) << "penalties can demote the best";
  p = greedy;
  p.presence_penalty = 0.5f;
  EXPECT_EQ(top_logits_needed(p, false, &log_z), 0);
  p = SamplingParams{};  // temperature 1, no top-k: a draw over the whole vocabulary
  EXPECT_EQ(top_logits_needed(p, false, &log_z), 0);
  p.top_p = 0.9f;
  EXPECT_EQ(top_logits_needed(p, false, &log_z), 0);
  p.top_k = 40;
  EXPECT_EQ(top_logits_needed(p, false, &log_z), 40);
  p.top_k = kMaxTopLogits + 1;
  EXPECT_EQ(top_logits_needed(p, false, &log_z), 0);
}

}  // namespace
}  // namespace meshlm::runtime
