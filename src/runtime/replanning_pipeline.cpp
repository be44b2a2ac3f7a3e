#include "runtime/replanning_pipeline.h"

#include "core/error.h"
#include "core/log.h"

namespace meshlm::runtime {

ReplanningPipeline::ReplanningPipeline(std::unique_ptr<Pipeline> initial,
                                       std::chrono::milliseconds retry_interval)
    : retry_interval_(retry_interval) {
  if (!initial) throw Error("pipeline", "ReplanningPipeline needs an initial pipeline");
  config_ = initial->config();
  kv_type_ = initial->kv_type();
  depth_ = std::max(1, initial->depth());
  last_stages_ = initial->stages();
  inner_ = std::move(initial);
}

ReplanningPipeline::~ReplanningPipeline() {
  std::unique_lock lock(mutex_);
  rebuilt_.wait(lock, [&] { return !rebuilding_; });
}

void ReplanningPipeline::request_rebuild(Builder builder, std::string reason) {
  std::lock_guard lock(mutex_);
  log::info("[pipeline] re-plan requested: {}", reason);
  pending_ = std::move(builder);
  pending_reason_ = std::move(reason);
  ++requests_;
  last_attempt_ = {};  // a new layout is worth trying at once
}

bool ReplanningPipeline::rebuild_pending() const {
  std::lock_guard lock(mutex_);
  return bool(pending_);
}

uint64_t ReplanningPipeline::rebuilds() const {
  std::lock_guard lock(mutex_);
  return rebuilds_;
}

bool ReplanningPipeline::idle_locked() const {
  return !rebuilding_ && in_flight_.empty() && active_.empty();
}

bool ReplanningPipeline::rebuild_if_idle() {
  std::unique_lock lock(mutex_);
  if (!pending_ || !idle_locked()) return false;
  return rebuild_locked(lock);
}

bool ReplanningPipeline::rebuild_locked(std::unique_lock<std::mutex>& lock) {
  auto now = std::chrono::steady_clock::now();
  if (last_attempt_ != std::chrono::steady_clock::time_point{} &&
      now - last_attempt_ < retry_interval_)
    return false;
  last_attempt_ = now;
  // Readers (stages() for /health) hold inner_ only briefly; new ones see rebuilding_ and keep off.
  rebuilding_ = true;
  users_drained_.wait(lock, [&] { return users_ == 0; });
  Builder builder = pending_;
  std::string reason = pending_reason_;
  const uint64_t request = requests_;
  std::unique_ptr<Pipeline> old = std::move(inner_);
  for (auto& s : last_stages_) s.state = "replanning";
  lock.unlock();

  std::unique_ptr<Pipeline> fresh;
  std::string error;
  auto t0 = std::chrono::steady_clock::now();
  try {
    old.reset();  // workers take one coordinator at a time: close their sessions first
    fresh = builder();
    if (!fresh) throw Error("pipeline", "the re-plan built no pipeline");
    if (fresh->config().n_layers != config_.n_layers || fresh->config().vocab != config_.vocab)
      throw Error("pipeline", "the re-planned pipeline serves a different model");
  } catch (const std::exception& e) {
    error = e.what();
    fresh.reset();
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  lock.lock();
  rebuilding_ = false;
  bool ok = fresh != nullptr;
  if (ok) {
    inner_ = std::move(fresh);
    depth_ = std::max(1, inner_->depth());
    last_stages_ = inner_->stages();
    build_error_.clear();
    ++rebuilds_;
    // A newer request made during the build stays pending; this one is done.
    if (requests_ == request) pending_ = nullptr;
    log::info("[pipeline] re-planned in {:.1f} s ({}): {} stage(s)", secs, reason,
              last_stages_.size());
  } else {
    build_error_ = error;
    for (auto& s : last_stages_) s.state = "down";
    log::error("[pipeline] re-plan failed ({}): {}; retrying", reason, error);
  }
  rebuilt_.notify_all();
  return ok;
}

Pipeline* ReplanningPipeline::use_locked() const {
  if (!inner_) return nullptr;
  ++users_;
  return inner_.get();
}

void ReplanningPipeline::done_using() const {
  std::lock_guard lock(mutex_);
  if (--users_ == 0) users_drained_.notify_all();
}

int ReplanningPipeline::depth() const {
  std::lock_guard lock(mutex_);
  return depth_;
}

void ReplanningPipeline::launch(MicroBatch batch) {
  std::unique_lock lock(mutex_);
  rebuilt_.wait(lock, [&] { return !rebuilding_; });
  if (pending_ && idle_locked()) rebuild_locked(lock);
  for (const auto& c : batch.chunks) active_.insert(c.seq_id);
  Pipeline* p = use_locked();
  if (!p) {
    MicroBatchResult r;
    r.id = batch.id;
    r.error = "the cluster is being re-planned and has no pipeline yet" +
              (build_error_.empty() ? std::string() : ": " + build_error_);
    r.retryable = true;  // a layout is coming: the engine waits for it
    in_flight_.push_back(std::move(r));
    return;
  }
  in_flight_.push_back(std::nullopt);
  lock.unlock();
  try {
    p->launch(std::move(batch));
  } catch (...) {
    done_using();
    throw;
  }
  done_using();
}

MicroBatchResult ReplanningPipeline::wait() {
  std::unique_lock lock(mutex_);
  if (in_flight_.empty()) throw Error("pipeline", "wait() with no micro-batch in flight");
  if (in_flight_.front()) {
    MicroBatchResult r = std::move(*in_flight_.front());
    in_flight_.pop_front();
    return r;
  }
  Pipeline* p = use_locked();  // in flight on inner_: it cannot have been replaced
  lock.unlock();
  MicroBatchResult r;
  try {
    r = p->wait();
  } catch (...) {
    lock.lock();
    if (--users_ == 0) users_drained_.notify_all();
    in_flight_.pop_front();
    throw;
  }
  lock.lock();
  if (--users_ == 0) users_drained_.notify_all();
  in_flight_.pop_front();
  return r;
}

void ReplanningPipeline::release(int64_t seq_id) {
  std::unique_lock lock(mutex_);
  Pipeline* p = use_locked();
  lock.unlock();
  if (p) {
    try {
      p->release(seq_id);
    } catch (const std::exception& e) {
      log::warn("[pipeline] release of sequence {} failed: {}", seq_id, e.what());
    }
  }
  lock.lock();
  if (p && --users_ == 0) users_drained_.notify_all();
  active_.erase(seq_id);
}

uint64_t ReplanningPipeline::kv_epoch() const {
  std::lock_guard lock(mutex_);
  // inner_->kv_epoch() only reads a counter: safe while another thread uses inner_.
  return (uint64_t(rebuilds_) << 32) + (inner_ && !rebuilding_ ? inner_->kv_epoch() : 0);
}

std::vector<StageInfo> ReplanningPipeline::stages() const {
  std::unique_lock lock(mutex_);
  if (rebuilding_ || !inner_) return last_stages_;
  Pipeline* p = use_locked();
  lock.unlock();
  std::vector<StageInfo> s;
  try {
    s = p->stages();
  } catch (...) {
    done_using();
    throw;
  }
  lock.lock();
  if (--users_ == 0) users_drained_.notify_all();
  last_stages_ = s;
  return s;
}

}  // namespace meshlm::runtime
