#include "server/http_thread_pool.h"

#include <algorithm>
#include <exception>
#include <system_error>

#include "core/log.h"

namespace meshlm::server {

struct HttpThreadPool::PoolThread {
  std::thread thread;
  std::condition_variable wake;
  std::function<void()> job;  // handed over by enqueue()
  std::list<std::unique_ptr<PoolThread>>::iterator self;
};

HttpThreadPool::HttpThreadPool(HttpThreadPoolOptions options) : options_(std::move(options)) {
  options_.max_threads = std::max<size_t>(1, options_.max_threads);
  options_.keep_threads = std::clamp<size_t>(options_.keep_threads, 1, options_.max_threads);
}

HttpThreadPool::~HttpThreadPool() {
  shutdown();
}

void HttpThreadPool::enqueue(std::function<void()> job) {
  std::lock_guard lock(mutex_);
  if (shutdown_) return;
  if (!idle_.empty()) {
    PoolThread* w = idle_.back();
    idle_.pop_back();
    w->job = std::move(job);
    w->wake.notify_one();
    return;
  }
  if (live_.size() >= options_.max_threads) {
    queue_.push_back(std::move(job));
    return;
  }
  auto thread = std::make_unique<PoolThread>();
  PoolThread* w = thread.get();
  w->job = std::move(job);
  live_.push_back(std::move(thread));
  w->self = std::prev(live_.end());
  // The new thread waits for the lock, so it sees `self` and `thread` set.
  try {
    w->thread = std::thread([this, w] { work(w); });
  } catch (const std::system_error& e) {
    // Out of threads: the job waits for a running one, if there is one.
    job = std::move(w->job);
    live_.pop_back();
    if (live_.empty()) throw;
    log::warn("[server] cannot start another HTTP thread ({}); the connection waits", e.what());
    queue_.push_back(std::move(job));
    return;
  }
  ++started_;
}

void HttpThreadPool::run_job(std::function<void()>& job) {
  try {
    job();
  } catch (const std::exception& e) {
    log::error("[server] a connection's handler threw: {}", e.what());
  } catch (...) {
    log::error("[server] a connection's handler threw");
  }
  job = nullptr;  // what the job holds (its socket, buffers) goes before the thread waits
}

void HttpThreadPool::work(PoolThread* self) {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (self->job) {
      std::function<void()> job = std::move(self->job);
      self->job = nullptr;
      lock.unlock();
      run_job(job);
      lock.lock();
      continue;
    }
    if (!queue_.empty()) {
      self->job = std::move(queue_.front());
      queue_.pop_front();
      continue;
    }
    if (shutdown_) return;  // shutdown() joins us
    idle_.push_back(self);
    if (self->wake.wait_for(lock, options_.idle_timeout,
                            [&] { return self->job != nullptr || shutdown_; }))
      continue;  // enqueue() took us off idle_; shutdown() clears idle_
    // Idle for idle_timeout: we are the least recently used of the idle threads.
    idle_.erase(std::find(idle_.begin(), idle_.end(), self));
    if (live_.size() > options_.keep_threads) {
      retired_.push_back(std::move(*self->self));
      live_.erase(self->self);
      return;  // a kept thread (or shutdown()) joins us
    }
    if (reap(lock) > 0 && idle_.size() + 1 == live_.size() && queue_.empty() &&
        options_.on_quiet) {
      lock.unlock();
      options_.on_quiet();
      lock.lock();
    }
  }
}

size_t HttpThreadPool::reap(std::unique_lock<std::mutex>& lock) {
  if (retired_.empty()) return 0;
  std::vector<std::unique_ptr<PoolThread>> done;
  done.swap(retired_);
  lock.unlock();
  for (auto& w : done) w->thread.join();
  const size_t joined = done.size();
  done.clear();
  lock.lock();
  return joined;
}

void HttpThreadPool::shutdown() {
  std::list<std::unique_ptr<PoolThread>> live;
  {
    std::unique_lock lock(mutex_);
    if (shutdown_ && live_.empty() && retired_.empty()) return;
    shutdown_ = true;
    idle_.clear();
    for (auto& w : live_) w->wake.notify_one();
    live.swap(live_);
  }
  // Threads still running jobs finish them and the queue, then return.
  for (auto& w : live) w->thread.join();
  std::unique_lock lock(mutex_);
  reap(lock);
}

size_t HttpThreadPool::threads() const {
  std::lock_guard lock(mutex_);
  return live_.size();
}

size_t HttpThreadPool::idle_threads() const {
  std::lock_guard lock(mutex_);
  return idle_.size();
}

size_t HttpThreadPool::threads_started() const {
  std::lock_guard lock(mutex_);
  return started_;
}

}  // namespace meshlm::server
