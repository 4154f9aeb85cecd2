// ThreadPool: what only a pool of threads does - tasks that capture the caller's state, init
// run in the caller's process, no task timeout. What every pool does is in pool_map_test.cpp.
#include "mpmux/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace mpmux {
namespace {

std::vector<int> iota_vec(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// Threads share the caller's memory, so tasks may capture what they need, by value or by
// reference, in map, imap, apply_async and nested pools alike.
TEST(ThreadPool, TasksMayCaptureTheCallersState) {
  ThreadPool pool({.n_jobs = 2});
  std::atomic<int> side{0};
  auto f = pool.apply_async([&side] { side = 5; });
  f.get();
  EXPECT_EQ(side.load(), 5);
  std::atomic<int> finished_others{0};
  auto held = [&](int x) {
    if (x == 0) {
      while (finished_others.load() < 3) std::this_thread::yield();
    } else {
      ++finished_others;
    }
    return x;
  };
  std::vector<int> got;
  for (int v : pool.imap(held, iota_vec(20), {.chunk_size = 1})) got.push_back(v);
  EXPECT_EQ(got, iota_vec(20));
  auto sums = pool.map(
      [](int x) {
        ThreadPool inner({.n_jobs = 2});
        auto v = inner.map([x](int y) { return x * y; }, iota_vec(10));
        return std::accumulate(v.begin(), v.end(), 0);
      },
      iota_vec(4), {.chunk_size = 1});
  EXPECT_EQ(sums, (std::vector<int>{0, 45, 90, 135}));
}

// worker_init runs in this process, once for the first worker and once per replacement, and
// every worker, replaced or not, returns its exit value.
TEST(ThreadPool, WorkerLifespanRunsInitInEveryReplacement) {
  std::atomic<int> inits{0};
  ThreadPool pool({.n_jobs = 1,
                   .worker_lifespan = 2,
                   .worker_init = [&](Worker&) { ++inits; },
                   .worker_exit = [](Worker& w) -> ExitValue { return w.state<int>(); }});
  auto out = pool.map([](Worker& w, int) { return ++w.state<int>(); }, iota_vec(20), {.chunk_size = 1});
  EXPECT_EQ(out.size(), 20u);
  pool.stop();
  EXPECT_EQ(inits.load(), 11);  // the first worker and ten replacements
  auto exits = pool.exit_values<int>();
  ASSERT_EQ(exits.size(), 11u);
  EXPECT_EQ(std::accumulate(exits.begin(), exits.end(), 0), 20);
}

TEST(ThreadPool, TaskTimeoutNeedsAProcessPool) {
  EXPECT_THROW(ThreadPool({.n_jobs = 1, .task_timeout = std::chrono::milliseconds(10)}), UsageError);
}

}  // namespace
}  // namespace mpmux
