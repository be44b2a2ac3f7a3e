// ThreadPool: every index is visited exactly once, by parallel_for and by parallel_chunks, for
// sizes that do and do not divide evenly, with thread indices in range; the pool survives
// thousands of back-to-back jobs (the decode loop's pattern).
#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace meshlm {
namespace {

void expect_each_once(const std::vector<std::atomic<int>>& hits, int64_t n) {
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "index " << i;
}

TEST(ThreadPool, ParallelChunksCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(12), int64_t(13), int64_t(1000)})
      for (int64_t grain : {int64_t(0), int64_t(1), int64_t(5), int64_t(12), int64_t(4096)}) {
        SCOPED_TRACE(::testing::Message() << "threads=" << threads << " n=" << n << " grain=" << grain);
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> bad_thread{0}, bad_range{0};
        pool.parallel_chunks(n, grain, [&](int64_t b, int64_t e, int t) {
          if (t < 0 || t >= threads) ++bad_thread;
          if (b < 0 || e > n || b >= e || (grain > 0 && e - b > grain)) ++bad_range;
          for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
        });
        EXPECT_EQ(bad_thread.load(), 0);
        EXPECT_EQ(bad_range.load(), 0);
        expect_each_once(hits, n);
      }
  }
}

TEST(ThreadPool, ParallelForSplitsContiguouslyOnePerThread) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(100);
  std::atomic<int> calls{0};
  pool.parallel_for(100, [&](int64_t b, int64_t e, int) {
    ++calls;
    for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
  });
  EXPECT_EQ(calls.load(), 3);
  expect_each_once(hits, 100);
}

TEST(ThreadPool, ManySmallJobsInARow) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int job = 0; job < 5000; ++job)
    pool.parallel_chunks(10, 3, [&](int64_t b, int64_t e, int) { sum += e - b; });
  EXPECT_EQ(sum.load(), 50000);
}

}  // namespace
}  // namespace meshlm
