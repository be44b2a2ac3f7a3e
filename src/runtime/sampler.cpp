#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/splitmix.h"

namespace meshlm::runtime {

int32_t argmax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return int32_t(best);
}

SequenceSampler::SequenceSampler(const SamplingParams& params) : params_(params) {
  seed_ = params.has_seed ? params.seed
                          : (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
}

void SequenceSampler::observe_prompt(const int32_t* ids, int64_t n) {
  for (int64_t i = 0; i < n; ++i) ++prompt_counts_[ids[i]];
}

void SequenceSampler::observe_generated(const int32_t* ids, int64_t n) {
  for (int64_t i = 0; i < n; ++i) ++generated_counts_[ids[i]];
}

void apply_mask(float* logits, int64_t vocab, const TokenMask& mask) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t base = 0; base < vocab; base += 64) {
    const size_t w = size_t(base / 64);
    const uint64_t bits = w < mask.size() ? mask[w] : 0;
    if (bits == ~uint64_t{0}) continue;  // all allowed (inside a string: most words)
    const int64_t end = std::min<int64_t>(base + 64, vocab);
    if (bits == 0) {  // none allowed (between values: most words)
      std::fill(logits + base, logits + end, ninf);
      continue;
    }
    for (int64_t i = base; i < end; ++i)
      if (!((bits >> (i - base)) & 1)) logits[i] = ninf;
  }
}

// argmax over the allowed ids only (the first on ties), reading nothing of the refused ones:
// greedy under a mask without writing -inf over the vocabulary. -1 when none is allowed.
int32_t masked_argmax(const float* logits, int64_t vocab, const TokenMask& mask) {
  int64_t best = -1;
  float best_v = 0;
  for (int64_t base = 0; base < vocab; base += 64) {
    const size_t w = size_t(base / 64);
    uint64_t bits = w < mask.size() ? mask[w] : 0;
    if (vocab - base < 64) bits &= (uint64_t{1} << (vocab - base)) - 1;
    while (bits) {
      const int64_t i = base + __builtin_ctzll(bits);
      bits &= bits - 1;
      if (best < 0 || logits[i] > best_v) {
        best = i;
        best_v = logits[i];
      }
    }
  }
  return int32_t(best);
}

SampledToken SequenceSampler::sample(float* logits, int64_t vocab, int64_t position,
                                     const TokenMask* mask, double given_log_z) {
  if (position < 0) position = (int64_t{1} << 62) + draws_++;
  SampledToken out;
  const SamplingParams& p = params_;
  // Log-probabilities of the raw distribution, reported to clients.
  const bool want_logprobs = p.logprobs || p.top_logprobs > 0;
  float max_raw = -std::numeric_limits<float>::infinity();
  double log_z = 0;
  if (want_logprobs) {
    if (std::isnan(given_log_z)) {
      for (int64_t i = 0; i < vocab; ++i) max_raw = std::max(max_raw, logits[i]);
      double z = 0;
      for (int64_t i = 0; i < vocab; ++i) z += std::exp(double(logits[i]) - max_raw);
      log_z = std::log(z) + max_raw;
    } else {
      log_z = given_log_z;  // the row holds only its top values
    }
    if (p.top_logprobs > 0) {
      int64_t k = std::min<int64_t>(p.top_logprobs, vocab);
      std::vector<int32_t> idx(static_cast<size_t>(vocab));
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
      });
      for (int64_t i = 0; i < k; ++i)
        out.top.emplace_back(idx[size_t(i)], float(double(logits[idx[size_t(i)]]) - log_z));
    }
  }
  std::vector<float> raw;  // the unpenalised logits, for the chosen token's logprob
  if (want_logprobs) raw.assign(logits, logits + vocab);
  const bool greedy = p.temperature <= 0.0f;
  // Under a sparse mask (between JSON values: a handful of tokens) temperature sampling runs over
  // the allowed ids only; refused ones would have probability 0 and could never be drawn.
  std::vector<int32_t> cand;
  if (mask && !greedy) {
    int64_t allowed = 0;
    for (size_t w = 0; w < mask->size() && int64_t(w) * 64 < vocab; ++w)
      allowed += __builtin_popcountll((*mask)[w]);
    if (allowed * 8 <= vocab) {
      cand.reserve(size_t(allowed));
      for (int64_t base = 0; base < vocab; base += 64) {
        uint64_t bits = size_t(base / 64) < mask->size() ? (*mask)[size_t(base / 64)] : 0;
        if (vocab - base < 64) bits &= (uint64_t{1} << (vocab - base)) - 1;
        for (; bits; bits &= bits - 1) cand.push_back(int32_t(base + __builtin_ctzll(bits)));
      }
    }
    if (cand.empty()) apply_mask(logits, vocab, *mask);
  }
  const bool sparse = !cand.empty();

  // Penalties.
  if (p.repetition_penalty != 1.0f) {
    auto penalise = [&](int32_t id) {
      if (id < 0 || id >= vocab) return;
      float& l = logits[id];
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    };
    for (auto& [id, n] : prompt_counts_) penalise(id);
    for (auto& [id, n] : generated_counts_)
      if (!prompt_counts_.count(id)) penalise(id);
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)
    for (auto& [id, n] : generated_counts_)
      if (id >= 0 && id < vocab) logits[id] -= p.presence_penalty + p.frequency_penalty * float(n);

  int32_t chosen;
  if (p.temperature <= 0.0f) {
    chosen = mask ? masked_argmax(logits, vocab, *mask) : -1;
    if (chosen < 0) chosen = argmax(logits, vocab);
  } else {
    // Probabilities with temperature over the whole vocabulary (O(vocab)); only the candidates
    // that top-k / top-p / min-p can keep are sorted, by probability then id.
    const double inv_t = 1.0 / p.temperature;
    const int64_t n_cand = sparse ? int64_t(cand.size()) : vocab;  // candidates, ascending ids
    auto id_at = [&](int64_t k) { return sparse ? cand[size_t(k)] : int32_t(k); };
    const int32_t best = sparse ? masked_argmax(logits, vocab, *mask) : argmax(logits, vocab);
    const float m = logits[best];
    // Written (and read) at the candidates' ids only.
    std::unique_ptr<double[]> prob(new double[size_t(vocab)]);
    double z = 0;
    for (int64_t k = 0; k < n_cand; ++k) {
      const int32_t i = id_at(k);
      z += prob[size_t(i)] = std::exp((double(logits[i]) - m) * inv_t);
    }
    for (int64_t k = 0; k < n_cand; ++k) prob[size_t(id_at(k))] /= z;
    auto better = [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    };
    const bool truncate = p.top_k > 0 || p.top_p < 1.0f || p.min_p > 0.0f;
    std::vector<int32_t> idx;
    if (truncate) {
      // Grow the sorted head until it holds every token the filters could keep.
      int64_t head = p.top_k > 0 ? std::min<int64_t>(p.top_k, n_cand) : std::min<int64_t>(256, n_cand);
      for (;;) {
        if (sparse) {
          idx = cand;
        } else {
          idx.resize(static_cast<size_t>(vocab));
          std::iota(idx.begin(), idx.end(), 0);
        }
        std::partial_sort(idx.begin(), idx.begin() + head, idx.end(), better);
        idx.resize(size_t(head));
        if (p.top_k > 0 || head == n_cand) break;
        double mass = 0;
        for (int32_t id : idx) mass += prob[size_t(id)];
        bool top_p_covered = p.top_p >= 1.0f || mass >= p.top_p;
        bool min_p_covered = p.min_p <= 0.0f || prob[size_t(idx.back())] < prob[size_t(idx[0])] * p.min_p;
        if (p.top_p < 1.0f && p.min_p <= 0.0f ? top_p_covered
            : p.min_p > 0.0f && p.top_p >= 1.0f ? min_p_covered
                                                 : (top_p_covered || min_p_covered))
          break;
        head = std::min<int64_t>(head * 4, n_cand);
      }
      size_t keep = idx.size();
      // Renormalise over the top-k head before min-p / top-p, as llama.cpp's chain does.
      double head_mass = 1.0;
      if (p.top_k > 0) {
        head_mass = 0;
        for (size_t i = 0; i < keep; ++i) head_mass += prob[size_t(idx[i])];
      }
      if (p.min_p > 0.0f) {
        double threshold = prob[size_t(idx[0])] * p.min_p;
        size_t n = 1;
        while (n < keep && prob[size_t(idx[n])] >= threshold) ++n;
        keep = n;
      }
      if (p.top_p < 1.0f) {
        double cum = 0;
        size_t n = 0;
        while (n < keep) {
          cum += prob[size_t(idx[n])] / head_mass;
          ++n;
          if (cum >= p.top_p) break;
        }
        keep = std::max<size_t>(1, n);
      }
      idx.resize(keep);
    }
    double total = 0;
    if (truncate)
      for (int32_t id : idx) total += prob[size_t(id)];
    else
      total = 1.0;
    // One uniform draw in [0, total) from (seed, position): 53 random bits.
    const uint64_t bits = splitmix64(seed_ ^ splitmix64(uint64_t(position)));
    double r = double(bits >> 11) * 0x1.0p-53 * total, acc = 0;
    if (truncate) {
      chosen = idx.back();
      // A masked head may end in refused tokens (probability 0): never fall back onto one.
      if (mask && prob[size_t(chosen)] == 0) chosen = idx.front();
      for (int32_t id : idx) {
        acc += prob[size_t(id)];
        if (r < acc) {
          chosen = id;
          break;
        }
      }
    } else {
      chosen = best;  // only reached through rounding at the very end
      for (int64_t k = 0; k < n_cand; ++k) {
        const int32_t i = id_at(k);
        acc += prob[size_t(i)];
        if (r < acc) {
          chosen = i;
          break;
        }
      }
    }
  }
  out.token = chosen;
  if (want_logprobs) out.logprob = float(double(raw[size_t(chosen)]) - log_z);
  ++generated_counts_[chosen];
  return out;
}

void SamplerSet::add(int64_t seq_id, const SamplingParams& params) {
  samplers_.erase(seq_id);
  samplers_.emplace(seq_id, Entry{SequenceSampler(params), false, 0});
}

void SamplerSet::release(int64_t seq_id) { samplers_.erase(seq_id); }

std::vector<std::pair<int64_t, SampledToken>> SamplerSet::sample_batch(
    std::span<const model::SeqChunk> chunks, std::span<const int32_t> tokens, float* logits,
    int64_t vocab, std::span<const SeqMask> masks, std::span<const double> row_log_z) {
  std::vector<std::pair<int64_t, SampledToken>> out;
  size_t t = 0;
  int64_t row = 0;
  for (const auto& ch : chunks) {
    auto it = samplers_.find(ch.seq_id);
    if (it == samplers_.end()) {
      SamplingParams greedy;
      greedy.temperature = 0.0f;
      it = samplers_.emplace(ch.seq_id, Entry{SequenceSampler(greedy), false, 0}).first;
    }
    Entry& e = it->second;
    // Input tokens join the penalty history once: prompt positions as prompt, later ones (a
    // replayed sequence's earlier output, or a sampled token fed back) as generated unless this
    // sampler already counted them when it sampled them.
    const int64_t boundary = e.sampler.params().prompt_tokens;
    for (int64_t i = 0; i < ch.n_tokens; ++i) {
      const int64_t q = ch.pos + i;
      if (q < e.counted_until) continue;
      const bool prompt = boundary >= 0 ? q < boundary : !e.sampled_any;
      if (prompt)
        e.sampler.observe_prompt(tokens.data() + t + size_t(i), 1);
      else
        e.sampler.observe_generated(tokens.data() + t + size_t(i), 1);
    }
    e.counted_until = std::max<int64_t>(e.counted_until, ch.pos + ch.n_tokens);
    t += size_t(ch.n_tokens);
    if (ch.all_logits) {
      row += ch.n_tokens;  // raw logits are returned; nothing to sample
      continue;
    }
    if (!ch.want_logits) continue;
    const int64_t last_pos = ch.pos + ch.n_tokens - 1;
    const TokenMask* mask = nullptr;
    for (const auto& [seq, m] : masks)
      if (seq == ch.seq_id && m) mask = m.get();
    const double log_z = size_t(row) < row_log_z.size() ? row_log_z[size_t(row)]
                                                         : std::numeric_limits<double>::quiet_NaN();
    out.emplace_back(ch.seq_id,
                     e.sampler.sample(logits + row * vocab, vocab, last_pos, mask, log_z));
    e.sampled_any = true;
    e.counted_until = std::max<int64_t>(e.counted_until, last_pos + 2);  // the sampled token
    ++row;
  }
  return out;
}

}  // namespace meshlm::runtime
