// The HTTP server's threads: one per connection being served, started when a connection arrives
// and no thread is idle, and ended after a while without work.
//
// Why not httplib's ThreadPool: it starts all its threads up front (the server needs one per
// active and queued request, ~200) and wakes them in turn, so under load every thread ends up
// holding the stack pages its deepest request touched and a per-thread malloc cache (glibc's
// tcache) — memory the program no longer uses but malloc_trim cannot return, and which grew by
// ~40 KB each time a load test reached a thread that had not served yet. Here an idle thread
// that goes longest without a connection exits (the C library then releases its stack and its
// cache), the most recently idle thread takes the next connection (so a steady load keeps
// reusing the same few threads), and once retired threads are joined and every remaining thread
// is idle, `on_quiet` runs (the server passes the allocator trim).
#pragma once

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace meshlm::server {

struct HttpThreadPoolOptions {
  size_t max_threads = 64;   // connections served at once; more wait in a queue
  size_t keep_threads = 1;   // threads that never retire (at least 1: it joins the others)
  std::chrono::milliseconds idle_timeout{2000};  // an idle thread beyond keep_threads retires
  std::function<void()> on_quiet;  // after retired threads are joined and no job runs
};

class HttpThreadPool : public httplib::TaskQueue {
 public:
  explicit HttpThreadPool(HttpThreadPoolOptions options);
  ~HttpThreadPool() override;
  HttpThreadPool(const HttpThreadPool&) = delete;
  HttpThreadPool& operator=(const HttpThreadPool&) = delete;

  // Runs `job` on an idle thread (the most recently idle), a new thread, or later when
  // max_threads are busy.
  void enqueue(std::function<void()> job) override;
  // Runs the jobs still queued, then joins every thread. Later enqueue() calls are dropped.
  void shutdown() override;

  size_t threads() const;       // started and not retired
  size_t idle_threads() const;  // waiting for a job
  size_t threads_started() const;  // since construction, retired ones included

 private:
  struct PoolThread;
  void work(PoolThread* self);
  void run_job(std::function<void()>& job);
  // Joins retired threads (outside the lock); returns how many.
  size_t reap(std::unique_lock<std::mutex>& lock);

  HttpThreadPoolOptions options_;
  mutable std::mutex mutex_;
  std::list<std::unique_ptr<PoolThread>> live_;       // started and not retired
  std::vector<std::unique_ptr<PoolThread>> retired_;  // returned from work(), not joined yet
  std::vector<PoolThread*> idle_;                     // waiting, most recently idle last
  std::deque<std::function<void()>> queue_;           // jobs waiting for a thread
  size_t started_ = 0;
  bool shutdown_ = false;
};

}  // namespace meshlm::server
