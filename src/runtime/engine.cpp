// The scheduler thread: continuous batching over a Pipeline.
//
// Every step it (1) applies cancellations, (2) admits waiting requests up to max_active,
// (3) fills the pipeline up to depth() micro-batches, each made of the next decode token of
// ready sequences plus prefill chunks of prompts, and (4) waits for the oldest micro-batch and
// delivers its tokens. A sequence is in at most one in-flight micro-batch at a time, since its
// next token depends on the previous one.
//
// A lost stage (a retryable failure) starts an outage: launching pauses, the batches in flight
// drain, and every active sequence is rewound to be re-prefilled from its prompt and the tokens
// it has produced (its KV is gone everywhere). Once the pipeline's stages are all ready again (or
// once a second, to let a pipeline that reconnects on launch try) the sequences are launched
// again and continue where they stopped; the sampler draws by (seed, position), so the text is
// the one an undisturbed run gives. After recovery_timeout_ms they fail with the reason.
#include "runtime/engine.h"

#include <algorithm>
#include <cstdio>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include "core/log.h"
#include "core/sysinfo.h"
#include "runtime/prefix_cache.h"

namespace meshlm::runtime {
namespace {

using Clock = std::chrono::steady_clock;

struct Sequence {
  uint64_t id = 0;
  Request request;
  int64_t prefilled = 0;    // tokens of the prefill already launched into the pipeline
  // Tokens to run through the model before decoding: the prompt, or after an outage the prompt
  // and every generated token but the last (which is the next decode step's input).
  int64_t prefill_target = 0;
  int64_t generated = 0;    // tokens sampled so far
  int32_t last_token = -1;  // the latest sampled token: input of the next decode step
  std::vector<int32_t> output;  // every sampled token, for a replay
  uint64_t replayed_in = 0;     // the outage (Impl::outages) that last rewound it
  bool params_sent = false;
  bool in_flight = false;
  bool cancelled = false;  // cancelled while in flight: dropped when its batch returns
  // Prefix cache: the sequence's chain of cached blocks so far (cache_blocks of them, the last
  // one cache_parent), and whether it may not go on (a block could not be kept).
  int64_t cache_parent = -1;
  int64_t cache_blocks = 0;
  bool cache_off = false;
  bool cache_looked_up = false;  // its first chunk asked the cache
  int64_t cached_tokens = 0;     // prompt tokens restored instead of computed

  int64_t prompt_len() const { return static_cast<int64_t>(request.prompt.size()); }
  bool prefill_done() const { return prefilled >= prefill_target; }
  int32_t token_at(int64_t i) const {
    return i < prompt_len() ? request.prompt[size_t(i)] : output[size_t(i - prompt_len())];
  }
  // Forgets the KV the pipeline held: the next launches prefill prompt + output[:-1] again.
  void rewind() {
    prefilled = 0;
    prefill_target = prompt_len() + std::max<int64_t>(0, generated - 1);
    params_sent = false;
    cache_parent = -1;
    cache_blocks = 0;
    cache_off = false;
    cache_looked_up = false;
  }
  // Decoding sequences have a sampled token that still has to go through the model.
  bool ready_to_decode() const { return prefill_done() && generated > 0; }
  // KV positions it holds once its next step is computed (the KV budget's unit).
  int64_t kv_need() const { return prompt_len() + generated + 1; }
};

// A sequence's part in a launched micro-batch.
struct Member {
  uint64_t id = 0;
  bool want_logits = false;
};

}  // namespace

struct Engine::Impl {
  std::unique_ptr<Pipeline> pipeline;
  EngineOptions options;

  mutable std::mutex mutex;  // guards waiting, cancels, stop, next_id, stats
  std::condition_variable wake;
  std::deque<std::unique_ptr<Sequence>> waiting;
  std::unordered_set<uint64_t> cancels;
  bool stop = false;
  uint64_t next_id = 1;
  EngineStats stats;

  // Scheduler-thread state.
  std::map<uint64_t, std::unique_ptr<Sequence>> active;  // by id: admission order
  std::deque<std::vector<Member>> in_flight;             // per launched batch: its sequences
  uint64_t next_batch_id = 1;
  std::thread thread;

  // Outage (scheduler thread): see the top of this file.
  struct Outage {
    bool active = false;    // since the first retryable failure, until a batch succeeds
    bool paused = false;    // not launching: draining, then waiting for the stages
    bool rewound = false;   // this pause's rewind is done
    bool gave_up = false;   // past the deadline: retryable failures fail at once
    Clock::time_point since, deadline, next_try;
    std::string error;      // the failure that started it (the latest one)
    int64_t replays = 0;    // sequences rewound during it
  } outage;
  int64_t replayed_before = 0;  // sequences replayed in earlier outages
  uint64_t outages = 0;         // outages started

  // Prefix cache (scheduler thread). Blocks it evicted are dropped on the stages with the next
  // micro-batch; after a failed batch (a save may not have happened everywhere) it is emptied
  // and the next batch drops every block.
  std::unique_ptr<PrefixCache> cache;
  std::vector<int64_t> pending_drops;
  bool drop_all_pending = false;
  size_t block_bytes = 0;  // one block's KV, all stages
  uint64_t kv_epoch = 0;   // the pipeline's, when the cache was last known good
  void reset_cache();
  std::vector<model::KvOp> cache_prefix(Sequence& seq);
  void cache_blocks(Sequence& seq, int64_t end, MicroBatch& batch);
  void set_cache_stats();

  void run();
  void apply_cancels();
  void admit();
  void preempt_over_budget();
  int64_t kv_held() const;
  bool launch_one();
  void complete_one();
  void fail_in_flight(const std::string& message);
  void finish(Sequence& seq, FinishReason reason, const std::string& error = {});
  bool deliver(Sequence& seq, const TokenEvent& event);
  void drain_on_stop();
  void start_outage(const std::string& error);
  void pause_step();
  bool stages_ready() const;
  void set_outage_stats();
};

Engine::Engine(std::unique_ptr<Pipeline> pipeline, const EngineOptions& options)
    : impl_(std::make_unique<Impl>()) {
  if (!pipeline) throw std::invalid_argument("[engine] no pipeline");
  if (options.max_batch_tokens < 1 || options.prefill_chunk < 1 || options.max_active < 1 ||
      options.max_queue < 0 || options.max_context < 2 || options.prefix_block_tokens < 1 ||
      options.prefix_cache_bytes < 0)
    throw std::invalid_argument("[engine] invalid options");
  impl_->pipeline = std::move(pipeline);
  impl_->options = options;
  {
    const auto& cfg = impl_->pipeline->config();
    const int64_t B = options.prefix_block_tokens;
    impl_->block_bytes = size_t(B * cfg.kv_bytes_per_token(impl_->pipeline->kv_type()));
    const int64_t max_blocks =
        options.prefix_cache_bytes > 0 ? int64_t(uint64_t(options.prefix_cache_bytes) / impl_->block_bytes) : 0;
    impl_->cache = std::make_unique<PrefixCache>(B, max_blocks);
  }
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stop = true;
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint64_t Engine::submit(Request request) {
  if (request.prompt.empty()) throw std::invalid_argument("[engine] empty prompt");
  const auto n = static_cast<int64_t>(request.prompt.size());
  if (n >= impl_->options.max_context)
    throw std::invalid_argument("[engine] prompt of " + std::to_string(n) +
                                " tokens does not fit the context of " +
                                std::to_string(impl_->options.max_context) + " tokens");
  if (request.max_tokens < 1) throw std::invalid_argument("[engine] max_tokens must be >= 1");
  if (impl_->options.kv_budget_tokens > 0 && n + 1 > impl_->options.kv_budget_tokens)
    throw std::invalid_argument("[engine] prompt of " + std::to_string(n) +
                                " tokens does not fit the KV memory budget of " +
                                std::to_string(impl_->options.kv_budget_tokens) +
                                " tokens (--kv-memory)");
  auto seq = std::make_unique<Sequence>();
  seq->request = std::move(request);
  seq->prefill_target = n;
  // The sampler's random numbers are a function of (seed, position): with the seed fixed here, a
  // sequence replayed after a lost stage samples the same tokens.
  if (!seq->request.sampling.has_seed) {
    std::random_device rd;
    seq->request.sampling.seed = (uint64_t(rd()) << 32) ^ rd();
    seq->request.sampling.has_seed = true;
  }
  seq->request.sampling.prompt_tokens = n;
  uint64_t id;
  {
    std::lock_guard lock(impl_->mutex);
    if (static_cast<int64_t>(impl_->waiting.size()) >= impl_->options.max_queue) throw QueueFull();
    id = impl_->next_id++;
    seq->id = id;
    impl_->waiting.push_back(std::move(seq));
    impl_->stats.queued = static_cast<int64_t>(impl_->waiting.size());
  }
  impl_->wake.notify_all();
  return id;
}

void Engine::cancel(uint64_t id) {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->cancels.insert(id);
  }
  impl_->wake.notify_all();
}

EngineStats Engine::stats() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->stats;
}

WeightType Engine::kv_type() const { return impl_->pipeline->kv_type(); }

const model::ModelConfig& Engine::config() const {
  return impl_->pipeline->config();
}
std::vector<StageInfo> Engine::stages() const {
  return impl_->pipeline->stages();
}
const EngineOptions& Engine::options() const {
  return impl_->options;
}

// ---- scheduler thread ----

bool Engine::Impl::deliver(Sequence& seq, const TokenEvent& event) {
  try {
    return seq.request.on_event ? seq.request.on_event(event) : true;
  } catch (const std::exception& e) {
    log::warn("[engine] on_event of request {} threw: {}", seq.id, e.what());
    return false;
  }
}

void Engine::Impl::finish(Sequence& seq, FinishReason reason, const std::string& error) {
  TokenEvent event;
  event.finished = true;
  event.reason = reason;
  event.error = error;
  event.prompt_tokens = seq.prompt_len();
  event.generated_tokens = seq.generated;
  event.cached_tokens = seq.cached_tokens;
  deliver(seq, event);
}

void Engine::Impl::apply_cancels() {
  std::vector<std::unique_ptr<Sequence>> dropped;
  {
    std::lock_guard lock(mutex);
    if (cancels.empty()) return;
    for (auto it = waiting.begin(); it != waiting.end();) {
      if (cancels.erase((*it)->id)) {
        dropped.push_back(std::move(*it));
        it = waiting.erase(it);
      } else {
        ++it;
      }
    }
    for (auto id : cancels) {
      auto it = active.find(id);
      if (it != active.end()) it->second->cancelled = true;
    }
    cancels.clear();
    stats.queued = static_cast<int64_t>(waiting.size());
  }
  for (auto& seq : dropped) finish(*seq, FinishReason::Cancelled);
  for (auto it = active.begin(); it != active.end();) {
    Sequence& seq = *it->second;
    if (seq.cancelled && !seq.in_flight) {
      pipeline->release(static_cast<int64_t>(seq.id));
      finish(seq, FinishReason::Cancelled);
      it = active.erase(it);
    } else {
      ++it;
    }
  }
}

int64_t Engine::Impl::kv_held() const {
  int64_t n = 0;
  for (const auto& [id, seq] : active) n += seq->kv_need();
  return n;
}

void Engine::Impl::admit() {
  std::lock_guard lock(mutex);
  int64_t held = options.kv_budget_tokens > 0 ? kv_held() : 0;
  while (!waiting.empty() && static_cast<int64_t>(active.size()) < options.max_active) {
    if (options.kv_budget_tokens > 0) {
      // In order: a request that does not fit yet holds back those behind it (no starvation).
      const int64_t need = waiting.front()->kv_need();
      if (!active.empty() && held + need > options.kv_budget_tokens) break;
      held += need;
    }
    auto seq = std::move(waiting.front());
    waiting.pop_front();
    uint64_t id = seq->id;
    active.emplace(id, std::move(seq));
  }
  stats.queued = static_cast<int64_t>(waiting.size());
  stats.active = static_cast<int64_t>(active.size());
  stats.kv_tokens = held;
}

// Decoding sequences grow by a position per step: past the KV budget, the most recently admitted
// sequences that are not in a micro-batch go back to the head of the queue (their KV freed; they
// are re-prefilled from prompt + output when admitted again, and sample the same tokens).
void Engine::Impl::preempt_over_budget() {
  if (options.kv_budget_tokens <= 0) return;
  int64_t held = kv_held();
  while (held > options.kv_budget_tokens && active.size() > 1) {
    auto victim = active.end();
    for (auto it = active.begin(); it != active.end(); ++it)
      if (!it->second->in_flight && !it->second->cancelled) victim = it;
    if (victim == active.end() || victim == active.begin()) break;  // the oldest always runs
    Sequence& seq = *victim->second;
    pipeline->release(static_cast<int64_t>(seq.id));
    seq.rewind();
    held -= seq.kv_need();
    log::debug("[engine] request {} preempted: the active sequences outgrew the KV budget of {} "
               "tokens", seq.id, options.kv_budget_tokens);
    std::lock_guard lock(mutex);
    ++stats.preemptions_total;
    waiting.push_front(std::move(victim->second));
    active.erase(victim);
    stats.queued = static_cast<int64_t>(waiting.size());
    stats.active = static_cast<int64_t>(active.size());
  }
  std::lock_guard lock(mutex);
  stats.kv_tokens = held;
}

// Builds one micro-batch from the sequences not already in flight and launches it. Decode tokens
// are spread over depth() batches so that every stage has work; prefill chunks fill the rest.
bool Engine::Impl::launch_one() {
  const int depth = std::max(1, pipeline->depth());
  // Stages that lost their KV without a failed batch (a worker restarted while idle) lost the
  // prefix blocks too.
  if (const uint64_t e = pipeline->kv_epoch(); e != kv_epoch) {
    kv_epoch = e;
    reset_cache();
  }
  int64_t decoding = 0;
  for (auto& [id, seq] : active)
    if (seq->ready_to_decode() && !seq->cancelled) ++decoding;
  const int64_t decode_cap = std::max<int64_t>(1, (decoding + depth - 1) / depth);

  MicroBatch batch;
  std::vector<Member> members;
  std::vector<std::pair<uint64_t, std::string>> refused;  // constrained sequences that cannot go on
  // The mask of a constrained sequence's next sample; false when there is none to be had.
  auto attach_mask = [&](uint64_t id, Sequence& seq) {
    if (!seq.request.constraint) return true;
    std::string why;
    try {
      auto mask = seq.request.constraint->next_mask();
      bool any = false;
      for (uint64_t w : *mask) any |= w != 0;
      if (any) {
        batch.masks.emplace_back(static_cast<int64_t>(id), std::move(mask));
        return true;
      }
      why = "[engine] no token of the vocabulary can continue the structured output";
    } catch (const std::exception& e) {
      why = e.what();
    }
    refused.emplace_back(id, why);
    return false;
  };
  // What the sampler needs of the row (a tensor-parallel group then moves only that).
  auto set_top_logits = [](model::SeqChunk& chunk, const Sequence& seq) {
    chunk.top_logits = top_logits_needed(seq.request.sampling, seq.request.constraint != nullptr,
                                         &chunk.top_log_z);
  };
  int64_t budget = options.max_batch_tokens;
  int64_t decode_taken = 0;
  for (auto& [id, seq] : active) {
    if (budget < 1 || decode_taken >= decode_cap) break;
    if (seq->in_flight || seq->cancelled || !seq->ready_to_decode()) continue;
    if (!attach_mask(id, *seq)) continue;
    model::SeqChunk chunk;
    chunk.seq_id = static_cast<int64_t>(id);
    chunk.pos = static_cast<int32_t>(seq->prompt_len() + seq->generated - 1);
    chunk.n_tokens = 1;
    chunk.want_logits = true;
    set_top_logits(chunk, *seq);
    batch.chunks.push_back(chunk);
    batch.tokens.push_back(seq->last_token);
    members.push_back({id, true});
    seq->in_flight = true;
    --budget;
    ++decode_taken;
  }
  for (auto& [id, seq] : active) {
    if (budget < 1) break;
    if (seq->in_flight || seq->cancelled || seq->prefill_done()) continue;
    // A sequence's first chunk: the blocks of its prefix that are cached are restored, not computed.
    std::vector<model::KvOp> restores;
    if (!seq->cache_looked_up && seq->prefilled == 0) restores = cache_prefix(*seq);
    // The sequence is a parameter: clang 14 cannot capture a structured binding.
    auto undo_restores = [&restores](Sequence& s) {
      if (restores.empty()) return;
      s.prefilled = 0;
      s.cache_parent = -1;
      s.cache_blocks = 0;
      s.cache_looked_up = false;
    };
    const int64_t n = std::min({options.prefill_chunk, budget, seq->prefill_target - seq->prefilled});
    model::SeqChunk chunk;
    chunk.seq_id = static_cast<int64_t>(id);
    chunk.pos = static_cast<int32_t>(seq->prefilled);
    chunk.n_tokens = static_cast<int32_t>(n);
    // A replayed prefill samples nothing: its next token is already known (last_token).
    chunk.want_logits = seq->prefilled + n == seq->prefill_target && seq->generated == 0;
    if (chunk.want_logits && !attach_mask(id, *seq)) {
      undo_restores(*seq);
      continue;
    }
    if (chunk.want_logits) set_top_logits(chunk, *seq);
    if (!restores.empty()) {
      batch.kv_ops.insert(batch.kv_ops.end(), restores.begin(), restores.end());
      if (seq->generated == 0 && seq->cached_tokens == 0) {  // counted once (not on a replay)
        seq->cached_tokens = seq->prefilled;
        std::lock_guard lock(mutex);
        stats.prefix_cache_hit_tokens_total += seq->prefilled;
        ++stats.prefix_cache_hits_total;
      }
    }
    batch.chunks.push_back(chunk);
    for (int64_t i = seq->prefilled; i < seq->prefilled + n; ++i)
      batch.tokens.push_back(seq->token_at(i));
    if (!seq->params_sent) {
      batch.new_sequences.emplace_back(static_cast<int64_t>(id), seq->request.sampling);
      seq->params_sent = true;
    }
    members.push_back({id, chunk.want_logits});
    seq->prefilled += n;
    seq->in_flight = true;
    budget -= n;
  }
  for (const auto& [id, why] : refused) {
    auto it = active.find(id);
    pipeline->release(static_cast<int64_t>(id));
    finish(*it->second, FinishReason::Error, why);
    active.erase(it);
  }
  if (members.empty()) return !refused.empty();
  // Blocks completed by this batch are saved after its forward; blocks evicted earlier are dropped
  // before it (none of them can be restored: the index forgot them when it evicted them).
  for (const auto& chunk : batch.chunks)
    cache_blocks(*active.at(uint64_t(chunk.seq_id)), int64_t(chunk.pos) + chunk.n_tokens, batch);
  {
    std::vector<model::KvOp> drops;
    if (drop_all_pending) {
      drops.push_back({model::KvOp::Kind::DropAll, 0, 0, 0, 0});
      drop_all_pending = false;
      pending_drops.clear();
    }
    for (int64_t block : pending_drops) drops.push_back({model::KvOp::Kind::Drop, 0, block, 0, 0});
    pending_drops.clear();
    batch.kv_ops.insert(batch.kv_ops.begin(), drops.begin(), drops.end());
  }
  set_cache_stats();
  batch.id = next_batch_id++;
  in_flight.push_back(members);
  try {
    pipeline->launch(std::move(batch));
  } catch (const std::exception& e) {
    // The batch never entered the pipeline: fail only its sequences.
    reset_cache();
    in_flight.pop_back();
    for (const auto& member : members) {
      const uint64_t id = member.id;
      auto it = active.find(id);
      it->second->in_flight = false;
      pipeline->release(static_cast<int64_t>(id));
      finish(*it->second, FinishReason::Error, e.what());
      active.erase(it);
    }
  }
  return true;
}

std::vector<model::KvOp> Engine::Impl::cache_prefix(Sequence& seq) {
  seq.cache_looked_up = true;
  std::vector<model::KvOp> ops;
  if (!cache->enabled()) return ops;
  const SamplingParams& p = seq.request.sampling;
  // A penalised sampler counts the prompt's tokens as they go through the model.
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)
    return ops;
  const int64_t B = cache->block_tokens();
  const int64_t limit = (seq.prefill_target - 1) / B;  // at least one token is computed
  if (limit < 1) return ops;
  std::vector<int32_t> tokens(size_t(limit * B));
  for (int64_t i = 0; i < limit * B; ++i) tokens[size_t(i)] = seq.token_at(i);
  const std::vector<int64_t> ids = cache->match(tokens, limit);
  if (ids.empty()) return ops;
  const int64_t seq_id = static_cast<int64_t>(seq.id);
  for (size_t k = 0; k < ids.size(); ++k)
    ops.push_back({model::KvOp::Kind::Restore, seq_id, ids[k], int32_t(int64_t(k) * B), int32_t(B)});
  seq.prefilled = int64_t(ids.size()) * B;
  seq.cache_parent = ids.back();
  seq.cache_blocks = int64_t(ids.size());
  return ops;
}

void Engine::Impl::cache_blocks(Sequence& seq, int64_t end, MicroBatch& batch) {
  if (!cache->enabled()) return;
  const int64_t B = cache->block_tokens();
  std::vector<int32_t> block(static_cast<size_t>(B));
  while (!seq.cache_off && (seq.cache_blocks + 1) * B <= end) {
    const int64_t begin = seq.cache_blocks * B;
    for (int64_t i = 0; i < B; ++i) block[size_t(i)] = seq.token_at(begin + i);
    const PrefixCache::Added a = cache->add(seq.cache_parent, block, pending_drops);
    if (a.id < 0) {
      seq.cache_off = true;
      break;
    }
    if (a.save)
      batch.kv_ops.push_back(
          {model::KvOp::Kind::Save, static_cast<int64_t>(seq.id), a.id, int32_t(begin), int32_t(B)});
    seq.cache_parent = a.id;
    ++seq.cache_blocks;
  }
}

void Engine::Impl::reset_cache() {
  if (cache->blocks() == 0 && pending_drops.empty() && !drop_all_pending) return;
  cache->clear();
  pending_drops.clear();
  drop_all_pending = true;
  // Sequences whose chains are gone stop adding blocks; those that have none yet go on.
  for (auto& [id, seq] : active)
    if (seq->cache_blocks > 0) seq->cache_off = true;
  set_cache_stats();
}

void Engine::Impl::set_cache_stats() {
  std::lock_guard lock(mutex);
  stats.prefix_cache_blocks = int64_t(cache->blocks());
  stats.prefix_cache_bytes = int64_t(cache->blocks() * block_bytes);
}

void Engine::Impl::fail_in_flight(const std::string& message) {
  while (!in_flight.empty()) {
    for (const auto& member : in_flight.front()) {
      const uint64_t id = member.id;
      auto it = active.find(id);
      if (it == active.end()) continue;
      pipeline->release(static_cast<int64_t>(id));
      finish(*it->second, it->second->cancelled ? FinishReason::Cancelled : FinishReason::Error,
             message);
      active.erase(it);
    }
    in_flight.pop_front();
  }
}

void Engine::Impl::complete_one() {
  MicroBatchResult result;
  try {
    result = pipeline->wait();
  } catch (const std::exception& e) {
    // The pipeline's state is unknown: every in-flight batch is lost.
    reset_cache();
    fail_in_flight(e.what());
    return;
  }
  // A failed batch's saves may have happened on some stages only.
  if (!result.error.empty()) reset_cache();
  std::vector<Member> members = std::move(in_flight.front());
  in_flight.pop_front();
  if (!result.error.empty() && result.retryable && options.recovery_timeout_ms > 0) {
    start_outage(result.error);
  } else if (result.error.empty() && outage.active && !outage.paused) {
    log::info("[engine] the pipeline is whole again after {:.1f} s{}",
              std::chrono::duration<double>(Clock::now() - outage.since).count(),
              outage.gave_up ? "" : "; " + std::to_string(outage.replays) +
                                        " sequence(s) replayed");
    {
      std::lock_guard lock(mutex);
      ++stats.recoveries_total;
      replayed_before += outage.replays;
      stats.replayed_total = replayed_before;
    }
    outage = Outage{};
    set_outage_stats();
  }

  std::map<int64_t, const SampledToken*> sampled;
  for (auto& [seq_id, token] : result.sampled) sampled[seq_id] = &token;

  for (const auto& member : members) {
    const uint64_t id = member.id;
    auto it = active.find(id);
    if (it == active.end()) continue;
    Sequence& seq = *it->second;
    seq.in_flight = false;
    auto end_seq = [&](FinishReason reason, const std::string& error = {}) {
      pipeline->release(static_cast<int64_t>(id));
      finish(seq, reason, error);
      active.erase(it);
    };
    if (!result.error.empty()) {
      if (result.retryable && !seq.cancelled && options.recovery_timeout_ms > 0 &&
          !outage.gave_up) {
        continue;  // kept: rewound and replayed once the pipeline is whole (start_outage)
      }
      end_seq(seq.cancelled ? FinishReason::Cancelled : FinishReason::Error,
              outage.gave_up ? result.error + "; " + outage.error : result.error);
      continue;
    }
    if (seq.cancelled) {
      end_seq(FinishReason::Cancelled);
      continue;
    }
    auto found = sampled.find(static_cast<int64_t>(id));
    if (found == sampled.end()) {
      if (member.want_logits) end_seq(FinishReason::Error, "[engine] pipeline returned no token");
      continue;  // an intermediate prefill chunk
    }
    const SampledToken& token = *found->second;
    if (seq.request.constraint) {
      try {
        seq.request.constraint->accept(token.token);
      } catch (const std::exception& e) {
        end_seq(FinishReason::Error, e.what());
        continue;
      }
    }
    ++seq.generated;
    seq.last_token = token.token;
    seq.output.push_back(token.token);

    FinishReason reason = FinishReason::None;
    const bool is_eos = std::find(seq.request.eos_ids.begin(), seq.request.eos_ids.end(),
                                  token.token) != seq.request.eos_ids.end();
    if (is_eos && !seq.request.ignore_eos)
      reason = FinishReason::Stop;
    else if (seq.generated >= seq.request.max_tokens ||
             seq.prompt_len() + seq.generated >= options.max_context)
      reason = FinishReason::Length;

    TokenEvent event;
    event.sampled = token;
    event.has_token = true;
    event.finished = reason != FinishReason::None;
    event.reason = reason;
    event.prompt_tokens = seq.prompt_len();
    event.generated_tokens = seq.generated;
    event.cached_tokens = seq.cached_tokens;
    // A finished sequence's KV is freed, and the stats updated, before its last event goes out.
    if (event.finished) pipeline->release(static_cast<int64_t>(id));
    const int64_t held = options.kv_budget_tokens > 0
                             ? kv_held() - (event.finished ? seq.kv_need() : 0)
                             : 0;
    {
      std::lock_guard lock(mutex);
      stats.kv_tokens = held;
      stats.generated_tokens_total += 1;
      if (seq.generated == 1) stats.prompt_tokens_total += seq.prompt_len();
      stats.active = static_cast<int64_t>(active.size()) - (event.finished ? 1 : 0);
    }
    const bool keep = deliver(seq, event);
    if (event.finished) {
      active.erase(it);
    } else if (!keep) {
      end_seq(FinishReason::Cancelled);
    }
  }
  const int64_t held = options.kv_budget_tokens > 0 ? kv_held() : 0;
  std::lock_guard lock(mutex);
  stats.active = static_cast<int64_t>(active.size());
  stats.kv_tokens = held;
}

void Engine::Impl::drain_on_stop() {
  while (!in_flight.empty()) {
    try {
      pipeline->wait();
    } catch (const std::exception&) {
    }
    in_flight.pop_front();
  }
  for (auto& [id, seq] : active) {
    pipeline->release(static_cast<int64_t>(id));
    finish(*seq, FinishReason::Cancelled, "server shutting down");
  }
  active.clear();
  std::deque<std::unique_ptr<Sequence>> rest;
  {
    std::lock_guard lock(mutex);
    rest.swap(waiting);
  }
  for (auto& seq : rest) finish(*seq, FinishReason::Cancelled, "server shutting down");
}

bool Engine::Impl::stages_ready() const {
  try {
    for (const auto& st : pipeline->stages())
      if (st.state != "ready") return false;
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

void Engine::Impl::set_outage_stats() {
  std::lock_guard lock(mutex);
  stats.recovering = outage.active && !outage.gave_up;
  stats.recovery_gave_up = outage.gave_up;
}

void Engine::Impl::start_outage(const std::string& error) {
  const auto now = Clock::now();
  if (!outage.active) {
    ++outages;
    outage.active = true;
    outage.since = now;
    outage.deadline = now + std::chrono::milliseconds(options.recovery_timeout_ms);
    log::warn("[engine] {}: pausing {} sequence(s) until the pipeline is whole again (up to {} s)",
              error, active.size(), options.recovery_timeout_ms / 1000.0);
  }
  outage.error = error;
  if (outage.gave_up) return;  // failing at once until a batch succeeds
  outage.paused = true;
  outage.rewound = false;
  outage.next_try = now + std::chrono::seconds(1);
  set_outage_stats();
}

// One turn of the scheduler while paused by an outage: drain what is in flight, rewind every
// sequence once, then resume when the stages are ready (or to try, once a second), or give up.
void Engine::Impl::pause_step() {
  if (!in_flight.empty()) {
    complete_one();
    return;
  }
  if (!outage.rewound) {
    for (auto& [id, seq] : active) {
      pipeline->release(static_cast<int64_t>(id));  // lets a re-planning pipeline go idle
      if ((seq->prefilled > 0 || seq->generated > 0) && seq->replayed_in != outages) {
        seq->replayed_in = outages;  // counted once per outage, however many tries it takes
        ++outage.replays;
      }
      seq->rewind();
    }
    outage.rewound = true;
    std::lock_guard lock(mutex);
    stats.replayed_total = replayed_before + outage.replays;
  }
  const auto now = Clock::now();
  if (stages_ready() || now >= outage.next_try) {
    outage.paused = false;
    return;
  }
  if (now >= outage.deadline) {
    char secs[32];
    std::snprintf(secs, sizeof(secs), "%g", options.recovery_timeout_ms / 1000.0);
    const std::string why = outage.error + "; the pipeline was not whole again within " + secs +
                            " s (--recovery-timeout)";
    log::error("[engine] {}: failing {} sequence(s)", why, active.size());
    outage.paused = false;
    outage.gave_up = true;
    outage.error = why;
    set_outage_stats();  // before the events: a client that sees its error sees the state too
    std::map<uint64_t, std::unique_ptr<Sequence>> failed;
    failed.swap(active);
    {
      std::lock_guard lock(mutex);
      stats.active = 0;
      stats.kv_tokens = 0;
    }
    for (auto& [id, seq] : failed) {
      finish(*seq, seq->cancelled ? FinishReason::Cancelled : FinishReason::Error, why);
    }
    return;
  }
  std::unique_lock lock(mutex);
  wake.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop || !cancels.empty(); });
}

void Engine::Impl::run() {
  bool worked = false;  // since the engine last went idle
  for (;;) {
    {
      std::unique_lock lock(mutex);
      if (in_flight.empty() && active.empty() && waiting.empty() && cancels.empty() && !stop &&
          worked) {
        // Going idle after a burst: give the allocator's free pages back (resident size returns
        // to its starting level).
        lock.unlock();
        sys::release_free_memory();
        worked = false;
        lock.lock();
      }
      if (in_flight.empty() && active.empty())
        wake.wait(lock, [&] { return stop || !waiting.empty() || !cancels.empty(); });
      if (stop) break;
    }
    worked = true;
    apply_cancels();
    admit();
    if (outage.paused) {
      pause_step();
      continue;
    }
    const int depth = std::max(1, pipeline->depth());
    preempt_over_budget();
    while (static_cast<int>(in_flight.size()) < depth && launch_one()) {
    }
    if (in_flight.empty()) continue;
    const auto start = Clock::now();
    complete_one();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    std::lock_guard lock(mutex);
    stats.busy_seconds += seconds;
  }
  drain_on_stop();
}

}  // namespace meshlm::runtime
