// A deterministic stand-in for a Pipeline, for engine and HTTP tests. It behaves like a model
// whose next token is a hash of every token the sequence has been fed, so the tokens it returns
// prove the engine fed the right ids at the right positions. It also checks the scheduler's
// invariants (positions continue the KV cache, a sequence is in one in-flight batch at a time,
// sampling params arrive on the first chunk) and records them for the tests. Prefix-cache
// operations work as on real stages: a block keeps the hash state at its end, a restore puts it
// back, so a wrong restore shows in the tokens.
#pragma once

#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "runtime/pipeline.h"

namespace meshlm::testing {

class FakePipeline : public runtime::Pipeline {
 public:
  struct Shared {  // what tests inspect (guarded by mutex)
    std::mutex mutex;
    std::vector<std::string> violations;
    std::set<int64_t> released;
    std::map<int64_t, runtime::SamplingParams> params;
    std::map<int64_t, int64_t> cached;  // seq -> tokens in its "KV cache"
    int max_in_flight = 0;
    int64_t max_batch_tokens_seen = 0;
    int64_t batches = 0;
    int64_t max_decode_rows = 0;  // most decode (1-token) chunks in one batch
    int64_t masked_samples = 0;   // tokens sampled under a token mask
    int64_t restored_tokens = 0;  // positions restored from prefix blocks
    int64_t max_cached_total = 0;  // most positions all sequences held at once
    int64_t saved_blocks = 0;
    std::set<int64_t> blocks;     // prefix blocks held
    std::string fail_message;     // non-empty: every batch from now on fails with it
    bool fail_retryable = false;  // ... as a lost stage (the engine pauses and replays)
    int64_t fail_after = 0;       // ... once this many more batches have succeeded
    bool throw_on_wait = false;
    std::string stage_state = "ready";
    bool hold = false;              // wait() blocks while set (see open())
    std::condition_variable hold_cv;
  };

  // Lets held batches finish: tests that need every request queued before the first result
  // set shared().hold, submit, then call this, so the outcome does not depend on scheduling.
  void open() {
    {
      std::lock_guard lock(shared_.mutex);
      shared_.hold = false;
    }
    shared_.hold_cv.notify_all();
  }

  explicit FakePipeline(int depth = 1, int64_t vocab = 1000, int delay_ms = 0)
      : depth_(depth), delay_ms_(delay_ms) {
    config_.model_type = "qwen3";
    config_.n_layers = 4;
    config_.vocab = vocab;
    config_.hidden = 64;
    config_.max_position = 4096;
    config_.n_kv_heads = 2;
    config_.head_dim = 8;
  }

  Shared& shared() { return shared_; }

  // The token the fake model produces after seeing `history` (the same hash the pipeline uses).
  static int32_t next_token(uint64_t hash, int64_t vocab) {
    return static_cast<int32_t>(hash % static_cast<uint64_t>(vocab));
  }
  static uint64_t mix(uint64_t hash, int32_t token) {
    return (hash ^ static_cast<uint64_t>(token + 1)) * 1099511628211ull;
  }

  const model::ModelConfig& config() const override { return config_; }
  int depth() const override { return depth_; }

  void launch(runtime::MicroBatch batch) override {
    std::lock_guard lock(shared_.mutex);
    std::set<int64_t> seen;
    int64_t total = 0, decode_rows = 0;
    for (auto& c : batch.chunks) {
      total += c.n_tokens;
      if (c.n_tokens == 1 && c.pos > 0) ++decode_rows;
      if (busy_.count(c.seq_id) || seen.count(c.seq_id))
        shared_.violations.push_back("seq " + std::to_string(c.seq_id) + " in two batches");
      seen.insert(c.seq_id);
      int64_t have = shared_.cached[c.seq_id];
      for (const auto& op : batch.kv_ops)
        if (op.kind == model::KvOp::Kind::Restore && op.seq_id == c.seq_id)
          have = std::max<int64_t>(have, op.pos + op.n_tokens);
      if (have != c.pos)
        shared_.violations.push_back("seq " + std::to_string(c.seq_id) + " pos " +
                                     std::to_string(c.pos) + " != cached " +
                                     std::to_string(shared_.cached[c.seq_id]));
      if (shared_.cached[c.seq_id] == 0) {
        bool has = false;
        for (auto& [id, p] : batch.new_sequences) has |= id == c.seq_id;
        if (!has) shared_.violations.push_back("no params for new seq");
      }
    }
    if (total != static_cast<int64_t>(batch.tokens.size()))
      shared_.violations.push_back("token count mismatch");
    for (auto& [id, p] : batch.new_sequences) shared_.params[id] = p;
    for (auto id : seen) busy_.insert(id);
    queue_.push_back(std::move(batch));
    shared_.max_in_flight = std::max<int>(shared_.max_in_flight, static_cast<int>(queue_.size()));
    shared_.max_batch_tokens_seen = std::max(shared_.max_batch_tokens_seen, total);
    shared_.max_decode_rows = std::max(shared_.max_decode_rows, decode_rows);
    ++shared_.batches;
  }

  runtime::MicroBatchResult wait() override {
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    std::unique_lock lock(shared_.mutex);
    shared_.hold_cv.wait(lock, [&] { return !shared_.hold; });
    if (queue_.empty()) throw std::runtime_error("[fake] wait with nothing in flight");
    runtime::MicroBatch batch = std::move(queue_.front());
    queue_.pop_front();
    for (auto& c : batch.chunks) busy_.erase(c.seq_id);
    if (shared_.throw_on_wait) throw std::runtime_error("[fake] connection to stage 1 lost");
    runtime::MicroBatchResult result;
    result.id = batch.id;
    if (!shared_.fail_message.empty() && shared_.fail_after > 0) {
      --shared_.fail_after;
    } else if (!shared_.fail_message.empty()) {
      result.error = shared_.fail_message;
      result.retryable = shared_.fail_retryable;
      return result;
    }
    for (const auto& op : batch.kv_ops) apply(op, false);
    size_t offset = 0;
    for (auto& c : batch.chunks) {
      std::vector<uint64_t>& hist = hist_[c.seq_id];
      if (c.pos == 0) hist.assign(1, 1469598103934665603ull);
      if (hist.size() != size_t(c.pos) + 1) {
        shared_.violations.push_back("seq " + std::to_string(c.seq_id) + " has no state at pos " +
                                     std::to_string(c.pos));
        hist.resize(size_t(c.pos) + 1);
      }
      uint64_t h = hist.back();
      for (int32_t i = 0; i < c.n_tokens; ++i) {
        h = mix(h, batch.tokens[offset + i]);
        hist.push_back(h);
      }
      offset += c.n_tokens;
      shared_.cached[c.seq_id] = c.pos + c.n_tokens;
      if (c.want_logits) {
        runtime::SampledToken t;
        t.token = next_token(h, config_.vocab);
        // A constrained sequence: the first allowed id from the "model's" choice on (wrapping).
        for (auto& [seq, mask] : batch.masks) {
          if (seq != c.seq_id) continue;
          ++shared_.masked_samples;
          auto allowed = [&](int64_t id) {
            return size_t(id / 64) < mask->size() && (((*mask)[size_t(id / 64)] >> (id % 64)) & 1);
          };
          for (int64_t k = 0; k < config_.vocab; ++k) {
            const int64_t id = (t.token + k) % config_.vocab;
            if (allowed(id)) {
              t.token = static_cast<int32_t>(id);
              break;
            }
          }
        }
        t.logprob = -0.5f;
        result.sampled.emplace_back(c.seq_id, t);
      }
    }
    for (const auto& op : batch.kv_ops) apply(op, true);
    int64_t total = 0;
    for (const auto& [seq, n] : shared_.cached) total += n;
    shared_.max_cached_total = std::max(shared_.max_cached_total, total);
    return result;
  }

  void release(int64_t seq_id) override {
    std::lock_guard lock(shared_.mutex);
    shared_.released.insert(seq_id);
    shared_.cached.erase(seq_id);
    hist_.erase(seq_id);
  }

  std::vector<runtime::StageInfo> stages() const override {
    std::lock_guard lock(const_cast<std::mutex&>(shared_.mutex));
    return {{"local", 0, 2, shared_.stage_state}, {"local", 2, 4, shared_.stage_state}};
  }

  // The tokens a sequence with this prompt produces when run alone, one at a time.
  static std::vector<int32_t> reference(const std::vector<int32_t>& prompt, int64_t n,
                                        int64_t vocab) {
    uint64_t h = 1469598103934665603ull;
    for (auto t : prompt) h = mix(h, t);
    std::vector<int32_t> out;
    for (int64_t i = 0; i < n; ++i) {
      out.push_back(next_token(h, vocab));
      h = mix(h, out.back());
    }
    return out;
  }

 private:
  model::ModelConfig config_;
  int depth_;
  int delay_ms_;
  Shared shared_;
  std::deque<runtime::MicroBatch> queue_;
  std::set<int64_t> busy_;
  // Per sequence: the hash state after each position (0 where restored from a block).
  std::map<int64_t, std::vector<uint64_t>> hist_;
  struct Block {
    uint64_t hash = 0;  // the state after the block's last position
    int32_t pos = 0, n_tokens = 0;
  };
  std::map<int64_t, Block> blocks_;

  // Called with shared_.mutex held, in the batch's order: restores/drops before, saves after.
  void apply(const model::KvOp& op, bool after) {
    using K = model::KvOp::Kind;
    if ((op.kind == K::Save) != after) return;
    auto bad = [&](const std::string& why) { shared_.violations.push_back("kv op: " + why); };
    switch (op.kind) {
      case K::DropAll:
        blocks_.clear();
        break;
      case K::Drop:
        if (!blocks_.erase(op.block)) bad("drop of unknown block " + std::to_string(op.block));
        break;
      case K::Save: {
        auto& hist = hist_[op.seq_id];
        if (size_t(op.pos + op.n_tokens) >= hist.size() || blocks_.count(op.block)) {
          bad("save of block " + std::to_string(op.block));
          break;
        }
        blocks_[op.block] = {hist[size_t(op.pos + op.n_tokens)], op.pos, op.n_tokens};
        ++shared_.saved_blocks;
        break;
      }
      case K::Restore: {
        auto it = blocks_.find(op.block);
        auto& hist = hist_[op.seq_id];
        if (op.pos == 0) hist.assign(1, 1469598103934665603ull);
        if (it == blocks_.end() || it->second.pos != op.pos || it->second.n_tokens != op.n_tokens ||
            hist.size() != size_t(op.pos) + 1) {
          bad("restore of block " + std::to_string(op.block) + " at " + std::to_string(op.pos));
          break;
        }
        hist.resize(size_t(op.pos + op.n_tokens), 0);
        hist.push_back(it->second.hash);
        shared_.cached[op.seq_id] = op.pos + op.n_tokens;
        shared_.restored_tokens += op.n_tokens;
        break;
      }
    }
    shared_.blocks.clear();
    for (auto& [id, b] : blocks_) shared_.blocks.insert(id);
  }
};

}  // namespace meshlm::testing
