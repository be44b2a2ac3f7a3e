// Sampling of the next token from logits: greedy, temperature, top-k, top-p, min-p, repetition /
// presence / frequency penalties, and a seed that makes it reproducible. A SequenceSampler holds
// one sequence's parameters, RNG and token history; it lives where the logits are (the last stage).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <unordered_map>
#include <vector>

#include "model/stage.h"

namespace meshlm::runtime {

struct SamplingParams {
  float temperature = 1.0f;  // <= 0: greedy
  int32_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  float repetition_penalty = 1.0f;  // HF/llama.cpp style, over prompt + generated tokens
  float presence_penalty = 0.0f;    // OpenAI style, over generated tokens
  float frequency_penalty = 0.0f;   // OpenAI style, over generated tokens
  uint64_t seed = 0;
  bool has_seed = false;     // without a seed, one is drawn from std::random_device
  // Where the prompt ends (positions < prompt_tokens are prompt, the rest generated), for the
  // penalties; -1: the tokens before the first sampled one are the prompt. The engine sets it so
  // that a sequence re-prefilled after a lost stage (prompt + generated tokens in one go) keeps
  // the same penalty history.
  int64_t prompt_tokens = -1;
  int32_t top_logprobs = 0;  // how many alternatives to report (0..20)
  bool logprobs = false;     // report the chosen token's log-probability
};

// The tokens a sequence may sample next (structured outputs): bit i of word i / 64 is token id i;
// ids past the end are refused. Built by the coordinator from the request's grammar
// (grammar/), carried to the last stage with the micro-batch.
using TokenMask = std::vector<uint64_t>;
using SeqMask = std::pair<int64_t, std::shared_ptr<const TokenMask>>;

struct SampledToken {
  int32_t token = -1;
  float logprob = 0.0f;  // log-softmax of the raw logits (before penalties/temperature)
  std::vector<std::pair<int32_t, float>> top;  // top_logprobs alternatives, best first
};

class SequenceSampler {
 public:
  explicit SequenceSampler(const SamplingParams& params);
  // Appends prompt or generated ids to the history used by penalties.
  void observe_prompt(const int32_t* ids, int64_t n);
  // Appends generated ids that come back as input (a replayed sequence's earlier output).
  void observe_generated(const int32_t* ids, int64_t n);
  // Samples from logits[vocab] (modified in place) and records the token as generated. The random
  // number is a function of the seed and `position` (the position of the last input token), so a
  // sequence replayed from its tokens draws the same numbers; position < 0 uses a running count.
  // With a mask, refused tokens get -inf before penalties, temperature and top-k/top-p/min-p (so
  // greedy picks the best allowed token); logprobs stay those of the raw distribution.
  // log_z: the log-sum-exp of the whole raw row when `logits` holds only its top values (-inf
  // elsewhere: SeqChunk::top_logits), for the logprobs; NaN: computed from the row.
  SampledToken sample(float* logits, int64_t vocab, int64_t position = -1,
                      const TokenMask* mask = nullptr,
                      double log_z = std::numeric_limits<double>::quiet_NaN());
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  uint64_t seed_ = 0;
  int64_t draws_ = 0;  // samples taken without a position
  std::unordered_map<int32_t, int32_t> prompt_counts_;     // for repetition_penalty
  std::unordered_map<int32_t, int32_t> generated_counts_;  // for all penalties
};

// The samplers of all sequences whose logits a (last) stage produces. Shared by the local
// pipeline and remote workers so both sample identically.
class SamplerSet {
 public:
  void add(int64_t seq_id, const SamplingParams& params);
  void release(int64_t seq_id);
  void clear() { samplers_.clear(); }
  // For a micro-batch's chunks and the logits rows Stage::forward produced ([rows, vocab]):
  // records prompt tokens for penalties (tokens of a sequence before its first sampled token),
  // and samples one token for each chunk with want_logits. Sequences without an explicit add()
  // get default (greedy) parameters. `masks`: allowed tokens of the sequences that have one.
  // `row_log_z`: per logits row, the whole row's log-sum-exp where the row holds only its top
  // values (Stage::forward's), NaN or empty otherwise.
  std::vector<std::pair<int64_t, SampledToken>> sample_batch(
      std::span<const model::SeqChunk> chunks, std::span<const int32_t> tokens, float* logits,
      int64_t vocab, std::span<const SeqMask> masks = {}, std::span<const double> row_log_z = {});

 private:
  struct Entry {
    SequenceSampler sampler;
    bool sampled_any = false;
    int64_t counted_until = 0;  // positions below this are in the penalty history
  };
  std::unordered_map<int64_t, Entry> samplers_;
};

// What the sampler needs of a row for these parameters (SeqChunk::top_logits / top_log_z): the
// number of largest values that decide the draw exactly — greedy: 1, top-k: k, and the
// top_logprobs alternatives — or 0 when it needs the whole row (penalties, a token mask,
// temperature without top-k, or more than kMaxTopLogits). *log_z: the logprobs need the row's
// log-sum-exp.
inline constexpr int32_t kMaxTopLogits = 1024;
inline int32_t top_logits_needed(const SamplingParams& p, bool masked, bool* log_z) {
  *log_z = false;
  if (masked || p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f ||
      p.frequency_penalty != 0.0f)
    return 0;  // the penalties and the mask can move any token into the lead
  int32_t k = p.top_logprobs;
  if (p.temperature <= 0.0f)
    k = std::max(k, 1);
  else if (p.top_k > 0)
    k = std::max(k, p.top_k);  // top-p and min-p then work within the top k (llama.cpp's order)
  else
    return 0;  // a draw over the whole vocabulary
  if (k > kMaxTopLogits) return 0;
  *log_z = p.logprobs || p.top_logprobs > 0;
  return k;
}

// Index of the largest value (the first one on ties), as llama.cpp's greedy sampler picks.
int32_t argmax(const float* logits, int64_t n);

}  // namespace meshlm::runtime
