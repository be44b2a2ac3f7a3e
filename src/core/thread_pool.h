// A persistent fork-join thread pool. The calling thread takes part in the work, so a pool of
// N threads starts N-1 workers. Workers spin briefly between jobs (a decode step issues hundreds
// of small jobs per token) and then sleep on a condition variable.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace meshlm {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(thread_index) once on each of the pool's threads (thread_index in [0, size())) and
  // returns when all have finished. Not reentrant: call from one thread at a time.
  void run_on_all(const std::function<void(int)>& fn);

  // Splits [0, n) into contiguous chunks, one per thread: fn(begin, end, thread_index).
  // The split depends only on n and size(), never on timing.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

  // Splits [0, n) into chunks of `grain` (the last may be shorter) that the threads take in turn
  // from a shared counter: fn(begin, end, thread_index), called any number of times per thread.
  // Which thread runs a chunk depends on timing, the chunks themselves do not. A thread that the
  // OS preempts (an HTTP or network thread wanting the core) then delays the job by at most one
  // chunk instead of by its whole static share.
  void parallel_chunks(int64_t n, int64_t grain,
                       const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void worker_loop(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
};

}  // namespace meshlm
