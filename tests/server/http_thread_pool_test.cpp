// The HTTP server's thread pool (server/http_thread_pool.h): threads start with work, the most
// recently idle one is reused, idle ones beyond keep_threads retire, queued jobs and shutdown.
#include "server/http_thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <set>
#include <thread>

namespace meshlm::server {
namespace {

using namespace std::chrono_literals;

// Polls `done` for up to `limit` (a bound for a broken test; outcomes never depend on it).
template <typename Fn>
bool eventually(Fn done, std::chrono::milliseconds limit = 60000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return done();
}

HttpThreadPoolOptions opts(size_t max_threads, size_t keep_threads,
                       std::chrono::milliseconds idle_timeout,
                       std::function<void()> on_quiet = {}) {
  HttpThreadPoolOptions o;
  o.max_threads = max_threads;
  o.keep_threads = keep_threads;
  o.idle_timeout = idle_timeout;
  o.on_quiet = std::move(on_quiet);
  return o;
}

// A job that blocks until released, recording which thread ran it.
struct Gate {
  std::promise<void> open;
  std::shared_future<void> opened = open.get_future().share();
};

TEST(HttpThreadPool, StartsThreadsOnlyWhenNoneIsIdle) {
  HttpThreadPool pool(opts(8, 1, 10s));
  EXPECT_EQ(pool.threads(), 0u);
  std::atomic<int> ran{0};
  for (int i = 0; i < 20; ++i) {
    pool.enqueue([&] { ++ran; });
    ASSERT_TRUE(eventually([&] { return ran == i + 1 && pool.idle_threads() == pool.threads(); }));
  }
  // One job at a time: the idle thread takes each next one, no new thread is started.
  EXPECT_EQ(pool.threads_started(), 1u);
}

TEST(HttpThreadPool, MostRecentlyIdleThreadTakesTheNextJob) {
  HttpThreadPool pool(opts(4, 4, 10s));
  Gate gates[3];
  std::mutex m;
  std::thread::id ran_on[3];
  for (int i = 0; i < 3; ++i)
    pool.enqueue([&, i] {
      {
        std::lock_guard lock(m);
        ran_on[i] = std::this_thread::get_id();
      }
      gates[i].opened.wait();
    });
  ASSERT_TRUE(eventually([&] { return pool.threads() == 3; }));
  // The threads go idle in the order 0, 1, 2: each job is let go only once the one before has
  // returned and its thread is idle (no sleeps deciding the order).
  for (int i = 0; i < 3; ++i) {
    gates[i].open.set_value();
    ASSERT_TRUE(eventually([&] { return pool.idle_threads() == static_cast<size_t>(i + 1); }));
  }
  std::atomic<std::thread::id> next{std::thread::id()};
  pool.enqueue([&] { next = std::this_thread::get_id(); });
  ASSERT_TRUE(eventually([&] { return pool.idle_threads() == 3 && next.load() != std::thread::id(); }));
  std::lock_guard lock(m);
  EXPECT_EQ(next.load(), ran_on[2]);
  EXPECT_EQ(pool.threads_started(), 3u);
}

TEST(HttpThreadPool, IdleThreadsBeyondKeepRetire) {
  std::atomic<int> quiet{0};
  HttpThreadPool pool(opts(16, 2, 50ms, [&] { ++quiet; }));
  Gate gate;
  std::atomic<int> ran{0};
  for (int i = 0; i < 10; ++i)
    pool.enqueue([&] {
      gate.opened.wait();
      ++ran;
    });
  ASSERT_TRUE(eventually([&] { return pool.threads() == 10; }));
  gate.open.set_value();
  ASSERT_TRUE(eventually([&] { return ran == 10; }));
  // Down to keep_threads, and the retired threads joined (then on_quiet ran).
  EXPECT_TRUE(eventually([&] { return pool.threads() == 2 && quiet > 0; }));
  EXPECT_EQ(pool.idle_threads(), 2u);
  // Still serves.
  std::atomic<bool> again{false};
  pool.enqueue([&] { again = true; });
  EXPECT_TRUE(eventually([&] { return again.load(); }));
}

TEST(HttpThreadPool, JobsBeyondMaxThreadsWaitAndRun) {
  HttpThreadPool pool(opts(2, 1, 10s));
  Gate gate;
  std::atomic<int> ran{0};
  for (int i = 0; i < 6; ++i)
    pool.enqueue([&] {
      gate.opened.wait();
      ++ran;
    });
  ASSERT_TRUE(eventually([&] { return pool.threads() == 2; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(pool.threads(), 2u);
  EXPECT_EQ(ran, 0);
  gate.open.set_value();
  EXPECT_TRUE(eventually([&] { return ran == 6; }));
  EXPECT_EQ(pool.threads_started(), 2u);
}

TEST(HttpThreadPool, ShutdownRunsQueuedJobsAndJoins) {
  std::atomic<int> ran{0};
  {
    HttpThreadPool pool(opts(1, 1, 10s));
    for (int i = 0; i < 5; ++i)
      pool.enqueue([&] {
        std::this_thread::sleep_for(5ms);
        ++ran;
      });
    pool.shutdown();
    EXPECT_EQ(ran, 5);
    EXPECT_EQ(pool.threads(), 0u);
    pool.enqueue([&] { ++ran; });  // dropped after shutdown
    pool.shutdown();
  }
  EXPECT_EQ(ran, 5);
}

TEST(HttpThreadPool, AThrowingJobDoesNotEndTheThread) {
  HttpThreadPool pool(opts(1, 1, 10s));
  std::atomic<bool> after{false};
  pool.enqueue([] { throw std::runtime_error("boom"); });
  pool.enqueue([&] { after = true; });
  EXPECT_TRUE(eventually([&] { return after.load(); }));
  EXPECT_EQ(pool.threads_started(), 1u);
}

TEST(HttpThreadPool, ManyShortJobsFromSeveralThreads) {
  HttpThreadPool pool(opts(8, 1, 1ms));
  std::atomic<int> ran{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < 4; ++p)
    producers.emplace_back([&] {
      for (int i = 0; i < 500; ++i) pool.enqueue([&] { ++ran; });
    });
  for (auto& t : producers) t.join();
  EXPECT_TRUE(eventually([&] { return ran == 2000; }));
  pool.shutdown();
  EXPECT_EQ(ran, 2000);
}

}  // namespace
}  // namespace meshlm::server
