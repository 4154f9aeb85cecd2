// Target completion time: a map that its measured rate says will be late makes the pool add
// workers up to max_n_jobs, and says so; at the cap it says so once.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mpmux/process_pool.hpp"
#include "mpmux/thread_pool.hpp"
#include "pool_test_support.hpp"
#include "test_support.hpp"

namespace mpmux {
namespace {

using std::chrono::milliseconds;
using test::BoardScope;
using test::usage_error_message;
using test::wait_until;

constexpr int kMaxWorkers = 8;

// Shared memory, so that the same tests run on the ThreadPool and on the ProcessPool.
struct GrowthBoard {
  std::atomic<int> inits[kMaxWorkers];
  std::atomic<unsigned> ran_on{0};  // bit per worker id that ran a task
  std::atomic<bool> gave_up{false};
  std::atomic<std::uint64_t> cpus_of[kMaxWorkers];
};
GrowthBoard* g_board = nullptr;


std::uint64_t mask_of(const std::vector<int>& cpus) {
  std::uint64_t m = 0;
  for (int c : cpus) m |= std::uint64_t{1} << (c % 64);
  return m;
}

// Element 0 takes longer than the whole target, so the map is late once it is measured. Every
// other element waits until three workers have run tasks: only a pool that grew to three
// finishes them (-1 on timeout).
int late_then_wait_for_three(Worker& w, int x) {
  g_board->ran_on |= 1u << w.id();
  g_board->cpus_of[w.id()] = mask_of(test::thread_cpus());
  if (x == 0) {
    std::this_thread::sleep_for(milliseconds(30));
    return 0;
  }
  auto three = [] { return std::popcount(g_board->ran_on.load()) >= 3; };
  if (!wait_until([&] { return three() || g_board->gave_up.load(); }) || !three()) {
    g_board->gave_up = true;  // the other elements fail at once
    return -1;
  }
  return x * x;
}

int slow_square(int x) {
  std::this_thread::sleep_for(milliseconds(3));  // the work: 3 ms at least, so 1 ms targets are missed
  return x * x;
}

int square(int x) { return x * x; }

std::vector<int> iota_vec(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

template <class Pool>
class PoolGrowth : public ::testing::Test {};
using PoolTypes = ::testing::Types<ThreadPool, ProcessPool>;
TYPED_TEST_SUITE(PoolGrowth, PoolTypes);

TYPED_TEST(PoolGrowth, ALateMapAddsWorkersThatAreInitializedPinnedAndUsed) {
  BoardScope<GrowthBoard> board(g_board);
  std::vector<int> cpus = test::allowed_cpus();
  int a = cpus.front(), b = cpus.back();
  std::vector<std::vector<int>> pins{{a}, {b}, {a}};  // one set per worker up to the cap
  TypeParam pool({.n_jobs = 1,
                  .cpu_ids = pins,
                  .worker_init = [](Worker& w) { ++g_board->inits[w.id()]; },
                  .worker_exit = [](Worker& w) -> ExitValue { return w.id(); },
                  .enable_insights = true,
                  .max_n_jobs = 3});
  EXPECT_EQ(pool.n_jobs(), 1);
  EXPECT_EQ(pool.max_n_jobs(), 3);
  std::vector<GrowthNotice> notices;
  auto out =
      pool.map(late_then_wait_for_three, iota_vec(30),
               {.chunk_size = 1, .target_duration = milliseconds(10), .on_grow = [&](const GrowthNotice& g) {
                  notices.push_back(g);
                }});
  std::vector<int> squares = iota_vec(30);
  for (int& x : squares) x *= x;
  ASSERT_EQ(out, squares) << "-1: an element waited in vain for three workers";

  ASSERT_FALSE(notices.empty());
  const GrowthNotice& g = notices.front();
  EXPECT_EQ(g.workers_before, 1);
  EXPECT_EQ(g.workers_after, 3);  // past the target: all the cap allows
  EXPECT_EQ(g.cap, 3);
  EXPECT_GT(g.rate, 0);
  EXPECT_GT(g.remaining, 0u);
  EXPECT_LT(g.time_left_s, 0);
  EXPECT_GT(g.eta_s, g.time_left_s);
  // Later, still late at the cap: said at most once more.
  ASSERT_LE(notices.size(), 2u);
  if (notices.size() == 2) {
    EXPECT_EQ(notices[1].workers_before, 3);
    EXPECT_EQ(notices[1].workers_after, 3);
  }

  EXPECT_EQ(pool.n_jobs(), 3);
  EXPECT_EQ(board->ran_on.load(), 0b111u);
  for (int id = 0; id < 3; ++id) {
    EXPECT_EQ(board->inits[id].load(), 1) << "worker_init in worker " << id;
    EXPECT_EQ(board->cpus_of[id].load(), mask_of(pins[static_cast<std::size_t>(id)])) << "pinning of " << id;
  }
  Insights ins = pool.insights();
  ASSERT_EQ(ins.workers.size(), 3u);
  std::uint64_t elements = 0;
  for (std::size_t id = 0; id < 3; ++id) {
    EXPECT_EQ(ins.workers[id].id, static_cast<int>(id));
    elements += ins.workers[id].elements;
  }
  EXPECT_EQ(elements, 30u);

  // Added workers persist: the next call uses them without growing again.
  auto again = pool.map(square, iota_vec(100));
  EXPECT_EQ(again[99], 99 * 99);
  pool.stop();
  auto exits = pool.template exit_values<int>();
  std::sort(exits.begin(), exits.end());
  EXPECT_EQ(exits, (std::vector<int>{0, 1, 2}));
}

TYPED_TEST(PoolGrowth, AMapOnTimeAddsNoWorker) {
  TypeParam pool({.n_jobs = 1, .max_n_jobs = 3});
  std::vector<GrowthNotice> notices;
  auto out = pool.map(square, iota_vec(200),
                      {.chunk_size = 1,
                       .target_duration = std::chrono::hours(1),
                       .on_grow = [&](const GrowthNotice& g) { notices.push_back(g); }});
  EXPECT_EQ(out[199], 199 * 199);
  EXPECT_TRUE(notices.empty());
  EXPECT_EQ(pool.n_jobs(), 1);
}

TYPED_TEST(PoolGrowth, LateAtTheCapIsSaidOncePerMap) {
  TypeParam pool({.n_jobs = 1});  // max_n_jobs defaults to n_jobs: the pool cannot grow
  std::vector<GrowthNotice> notices;
  auto out =
      pool.map(slow_square, iota_vec(8),
               {.chunk_size = 1, .target_duration = milliseconds(1), .on_grow = [&](const GrowthNotice& g) {
                  notices.push_back(g);
                }});
  EXPECT_EQ(out[7], 49);
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(notices[0].workers_before, 1);
  EXPECT_EQ(notices[0].workers_after, 1);
  EXPECT_EQ(notices[0].cap, 1);

  // Without a callback, the one notice is a line on std::cerr.
  std::ostringstream captured;
  auto* old = std::cerr.rdbuf(captured.rdbuf());
  try {
    pool.map(slow_square, iota_vec(8), {.chunk_size = 1, .target_duration = milliseconds(1)});
  } catch (...) {
    std::cerr.rdbuf(old);
    throw;
  }
  std::cerr.rdbuf(old);
  std::string text = captured.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_EQ(text.rfind("mpmux pool: ", 0), 0u) << text;
  EXPECT_NE(text.find("already at the cap of 1 worker"), std::string::npos) << text;
}

std::uint64_t slow_identity(std::uint64_t x) {
  std::this_thread::sleep_for(milliseconds(3));
  return x;
}

TYPED_TEST(PoolGrowth, GrowthNeedsAKnownTotal) {
  TypeParam pool({.n_jobs = 1, .max_n_jobs = 3});
  std::vector<GrowthNotice> notices;
  auto note = [&](const GrowthNotice& g) { notices.push_back(g); };
  std::atomic<std::uint64_t> produced{0};
  test::CountingGenerator unknown(6, produced);
  pool.map(slow_identity, unknown, {.chunk_size = 1, .target_duration = milliseconds(1), .on_grow = note});
  EXPECT_TRUE(notices.empty()) << "a generator without iterable_len has no total to be late against";
  EXPECT_EQ(pool.n_jobs(), 1);

  test::CountingGenerator known(6, produced);
  auto out =
      pool.map(slow_identity, known,
               {.chunk_size = 1, .iterable_len = 6, .target_duration = milliseconds(1), .on_grow = note});
  EXPECT_EQ(out, (std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5}));
  ASSERT_FALSE(notices.empty());
  EXPECT_EQ(notices[0].workers_after, 3);
  EXPECT_EQ(pool.n_jobs(), 3);
}

TYPED_TEST(PoolGrowth, AnAddedWorkerWhoseInitFailsFailsTheMap) {
  TypeParam pool({.n_jobs = 1,
                  .worker_init =
                      [](Worker& w) {
                        if (w.id() > 0) throw std::runtime_error("no licence left");
                      },
                  .max_n_jobs = 2});
  try {
    pool.map(slow_square, iota_vec(8),
             {.chunk_size = 1, .target_duration = milliseconds(1), .on_grow = [](const GrowthNotice&) {}});
    FAIL() << "expected PoolError";
  } catch (const PoolError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("worker_init failed in worker 1"), std::string::npos) << what;
    EXPECT_NE(what.find("no licence left"), std::string::npos) << what;
  }
}

TEST(PoolGrowthNotice, FormatsOneLineSayingWhatWasDone) {
  GrowthNotice g{.workers_before = 2,
                 .workers_after = 4,
                 .cap = 6,
                 .rate = 120,
                 .remaining = 5040,
                 .eta_s = 42,
                 .time_left_s = 20};
  EXPECT_EQ(format_growth(g),
            "mpmux pool: 120 elements/s leaves 42.0 s of work for 20.0 s; adding 2 workers (4, cap 6)");
  g.workers_before = g.workers_after = g.cap = 6;
  g.rate = 2.5;
  g.time_left_s = -3;
  EXPECT_EQ(format_growth(g),
            "mpmux pool: 2.5 elements/s leaves 42.0 s of work after the target time (passed 3.0 s ago); "
            "already at the cap of 6 workers");
}

TEST(PoolGrowthOptions, BadValuesAreUsageErrorsNamingTheOption) {
  EXPECT_NE(usage_error_message([] {
              ThreadPool({.n_jobs = 3, .max_n_jobs = 2});
            }).find("max_n_jobs must be at least n_jobs = 3"),
            std::string::npos);
  // Pinning one set per worker covers every worker the pool may grow to.
  EXPECT_NE(usage_error_message([] {
              ThreadPool({.n_jobs = 2, .cpu_ids = {{0}, {0}}, .max_n_jobs = 3});
            }).find("cpu_ids has 2 sets; give one set for all workers or one per worker (max_n_jobs = 3)"),
            std::string::npos);
  EXPECT_NE(usage_error_message([] {
              ProcessPool({.n_jobs = 2, .max_n_jobs = 1});
            }).find("ProcessPool: max_n_jobs must be at least n_jobs = 2 (got 1)"),
            std::string::npos);
  ThreadPool pool({.n_jobs = 1, .max_n_jobs = 2});
  EXPECT_NE(usage_error_message([&] {
              pool.map(square, iota_vec(3), {.target_duration = milliseconds(-5)});
            }).find("MapOptions::target_duration must not be negative (got -5 ms)"),
            std::string::npos);
  EXPECT_EQ(pool.map(square, iota_vec(3)), (std::vector<int>{0, 1, 4}));
}

}  // namespace
}  // namespace mpmux
