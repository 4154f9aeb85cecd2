// ThreadPool: the map family, chunking, workers' life cycle, errors, pinning, load gating.
#include "mpmux/thread_pool.hpp"

#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <list>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "pool_test_support.hpp"

namespace mpmux {
namespace {

using test::allowed_cpus;
using test::CountingGenerator;
using test::thread_cpus;

std::vector<int> iota_vec(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

TEST(ThreadPool, MapReturnsResultsInInputOrder) {
  ThreadPool pool({.n_jobs = 2});
  auto in = iota_vec(10000);
  auto out = pool.map([](int x) { return 3 * x + 1; }, in);
  ASSERT_EQ(out.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(out[i], 3 * in[i] + 1) << i;
}

TEST(ThreadPool, MapOverAListGoesThroughChunksAndKeepsOrder) {
  ThreadPool pool({.n_jobs = 2});
  std::list<std::string> in;
  for (int i = 0; i < 3000; ++i) in.push_back(std::to_string(i));
  auto out = pool.map([](const std::string& s) { return s + "!"; }, in, {.chunk_size = 7});
  ASSERT_EQ(out.size(), 3000u);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)], std::to_string(i) + "!");
}

TEST(ThreadPool, MapUnorderedReturnsEveryResultOnce) {
  ThreadPool pool({.n_jobs = 3});
  auto out = pool.map_unordered([](int x) { return x * 2; }, iota_vec(5000), {.chunk_size = 3});
  std::sort(out.begin(), out.end());
  ASSERT_EQ(out.size(), 5000u);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)], 2 * i);
}

// Element 0 is held until three later elements are done, so completion order differs from
// input order: imap must still yield 0 first, imap_unordered must not.
TEST(ThreadPool, ImapKeepsInputOrderAndImapUnorderedFollowsCompletion) {
  for (bool ordered : {true, false}) {
    ThreadPool pool({.n_jobs = 2});
    std::atomic<int> finished_others{0};
    auto task = [&](int x) {
      if (x == 0) {
        while (finished_others.load() < 3) std::this_thread::yield();
      } else {
        ++finished_others;
      }
      return x;
    };
    MapOptions opts{.chunk_size = 1};
    std::vector<int> got;
    if (ordered) {
      for (int v : pool.imap(task, iota_vec(20), opts)) got.push_back(v);
      EXPECT_EQ(got, iota_vec(20));
    } else {
      for (int v : pool.imap_unordered(task, iota_vec(20), opts)) got.push_back(v);
      ASSERT_EQ(got.size(), 20u);
      EXPECT_NE(got.front(), 0);
      std::sort(got.begin(), got.end());
      EXPECT_EQ(got, iota_vec(20));
    }
  }
}

TEST(ThreadPool, ApplyAndApplyAsyncReturnValuesAndErrors) {
  ThreadPool pool({.n_jobs = 2});
  EXPECT_EQ(pool.apply([](int a, int b) { return a + b; }, 2, 40), 42);
  auto f1 = pool.apply_async([](const std::string& s) { return s.size(); }, std::string("hello"));
  auto f2 = pool.apply_async([](Worker& w, int x) { return w.id() >= 0 ? x : -1; }, 7);
  std::atomic<int> side{0};
  auto f3 = pool.apply_async([&side] { side = 5; });
  EXPECT_EQ(f1.get(), 5u);
  EXPECT_EQ(f2.get(), 7);
  f3.get();
  EXPECT_EQ(side.load(), 5);
  auto bad = pool.apply_async([]() -> int { throw std::runtime_error("no luck"); });
  try {
    bad.get();
    FAIL() << "expected TaskError";
  } catch (const TaskError& e) {
    ASSERT_EQ(e.failures().size(), 1u);
    EXPECT_EQ(e.failures()[0].message, "no luck");
  }
}

TEST(ThreadPool, BadNJobsAndChunkSizeAreUsageErrors) {
  EXPECT_THROW(ThreadPool({.n_jobs = 0}), UsageError);
  EXPECT_THROW(ThreadPool({.n_jobs = -3}), UsageError);
  try {
    ThreadPool({.n_jobs = 0});
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("n_jobs"), std::string::npos) << e.what();
  }
  ThreadPool pool({.n_jobs = 1});
  EXPECT_THROW(pool.map([](int x) { return x; }, iota_vec(10), {.chunk_size = 0}), UsageError);
  std::list<int> l{1, 2, 3};
  EXPECT_THROW(pool.map([](int x) { return x; }, l, {.chunk_size = 0}), UsageError);
  EXPECT_THROW(pool.map([](int x) { return x; }, l, {.max_tasks_active = 0}), UsageError);
  // The pool stays usable after a rejected call.
  EXPECT_EQ(pool.map([](int x) { return x + 1; }, l), (std::vector<int>{2, 3, 4}));
}

TEST(ThreadPool, GuidedChunksShrinkTowardTheEndAndRespectTheCap) {
  MapOptions o;
  EXPECT_EQ(pool_detail::next_chunk_size(o, 2, 0, 1000), 250u);
  EXPECT_EQ(pool_detail::next_chunk_size(o, 2, 900, 1000), 25u);
  EXPECT_EQ(pool_detail::next_chunk_size(o, 2, 999, 1000), 1u);
  EXPECT_EQ(pool_detail::next_chunk_size(o, 1, 0, 100000000), o.max_chunk_size);
  // Unknown length: chunks grow with what was read so far.
  EXPECT_EQ(pool_detail::next_chunk_size(o, 2, 0, 0), 1u);
  EXPECT_EQ(pool_detail::next_chunk_size(o, 2, 400, 0), 100u);
  o.chunk_size = 9;
  EXPECT_EQ(pool_detail::next_chunk_size(o, 2, 0, 1000), 9u);
}

TEST(ThreadPool, IterableLenGivesAGeneratorItsTotal) {
  ThreadPool pool({.n_jobs = 2});
  std::atomic<std::uint64_t> produced{0};
  CountingGenerator gen(500, produced);
  Progress last;
  auto out = pool.map([](std::uint64_t x) { return x; }, gen,
                      {.iterable_len = 500, .progress = [&](const Progress& p) { last = p; },
                       .progress_interval = std::chrono::milliseconds(0)});
  ASSERT_EQ(out.size(), 500u);
  for (std::uint64_t i = 0; i < 500; ++i) ASSERT_EQ(out[i], i);
  EXPECT_TRUE(last.finished);
  EXPECT_EQ(last.total, 500u);
  EXPECT_EQ(last.done, 500u);
}

// A generator of 10^9 items: the pool never reads more than max_tasks_active chunks ahead of
// what the consumer took, and dropping the stream stops reading.
TEST(ThreadPool, MaxTasksActiveBoundsHowFarTheProducerRunsAhead) {
  ThreadPool pool({.n_jobs = 2});
  std::atomic<std::uint64_t> produced{0};
  CountingGenerator gen(1'000'000'000ull, produced);
  const std::uint64_t active = 4, chunk = 10;
  std::uint64_t consumed = 0, max_ahead = 0;
  {
    auto stream = pool.imap([](std::uint64_t x) { return x * 2; }, gen,
                            {.chunk_size = chunk, .max_tasks_active = active});
    for (std::uint64_t v : stream) {
      ASSERT_EQ(v, 2 * consumed);
      ++consumed;
      max_ahead = std::max(max_ahead, produced.load() - consumed);
      ASSERT_LE(produced.load(), consumed + active * chunk);
      if (consumed == 20000) break;
    }
  }
  EXPECT_GT(max_ahead, 0u);
  EXPECT_LE(produced.load(), 20000 + active * chunk);
}

TEST(ThreadPool, WorkerLifespanReplacesTheWorkerAndResetsItsState) {
  std::atomic<int> inits{0};
  ThreadPool pool({.n_jobs = 1,
                   .worker_lifespan = 2,
                   .worker_init = [&](Worker&) { ++inits; },
                   .worker_exit = [](Worker& w) -> ExitValue { return w.state<int>(); }});
  auto out = pool.map([](Worker& w, int) { return ++w.state<int>(); }, iota_vec(20), {.chunk_size = 1});
  std::vector<int> expect;
  for (int i = 0; i < 10; ++i) expect.insert(expect.end(), {1, 2});
  EXPECT_EQ(out, expect);
  pool.stop();
  EXPECT_EQ(inits.load(), 11);  // the first worker and ten replacements
  auto exits = pool.exit_values<int>();
  ASSERT_EQ(exits.size(), 11u);
  EXPECT_EQ(std::accumulate(exits.begin(), exits.end(), 0), 20);
}

TEST(ThreadPool, WorkerInitAndExitSeeTheWorkerIdAndReturnValues) {
  ThreadPool pool({.n_jobs = 3,
                   .worker_init = [](Worker& w) { w.state<int>() = 100 * w.id(); },
                   .worker_exit = [](Worker& w) -> ExitValue { return w.state<int>(); }});
  auto ids = pool.map([](Worker& w, int) { return w.id(); }, iota_vec(300), {.chunk_size = 1});
  for (int id : ids) ASSERT_TRUE(id >= 0 && id < 3) << id;
  pool.stop();
  auto exits = pool.exit_values<int>();
  std::sort(exits.begin(), exits.end());
  EXPECT_EQ(exits, (std::vector<int>{0, 100, 200}));
  EXPECT_THROW(pool.map([](int x) { return x; }, iota_vec(3)), UsageError);
}

TEST(ThreadPool, PerWorkerStatePersistsAcrossCalls) {
  ThreadPool pool({.n_jobs = 2, .worker_exit = [](Worker& w) -> ExitValue { return w.state<int>(); }});
  auto count = [](Worker& w, int) { return ++w.state<int>(); };
  pool.map(count, iota_vec(100), {.chunk_size = 5});
  pool.map(count, iota_vec(50), {.chunk_size = 5});
  pool.stop();
  auto exits = pool.exit_values<int>();
  EXPECT_EQ(std::accumulate(exits.begin(), exits.end(), 0), 150);
}

TEST(ThreadPool, ExceptionsComeBackWithIndexAndMessage) {
  ThreadPool pool({.n_jobs = 2});
  auto task = [](int x) {
    if (x % 10 == 3) throw std::runtime_error("bad " + std::to_string(x));
    return x;
  };
  for (bool direct : {true, false}) {
    MapOptions first{.chunk_size = 4};
    if (!direct) first.max_tasks_active = 8;  // forces the chunk queue path
    try {
      pool.map(task, iota_vec(100), first);
      FAIL() << "expected TaskError";
    } catch (const TaskError& e) {
      ASSERT_EQ(e.failures().size(), 1u);
      std::uint64_t i = e.failures()[0].index;
      EXPECT_EQ(i % 10, 3u);
      EXPECT_EQ(e.failures()[0].message, "bad " + std::to_string(i));
      EXPECT_NE(std::string(e.what()).find("element " + std::to_string(i)), std::string::npos);
    }
    MapOptions all = first;
    all.on_error = OnError::report_all;
    try {
      pool.map(task, iota_vec(100), all);
      FAIL() << "expected TaskError";
    } catch (const TaskError& e) {
      ASSERT_EQ(e.failures().size(), 10u);
      for (std::size_t k = 0; k < 10; ++k) {
        EXPECT_EQ(e.failures()[k].index, 10 * k + 3);
        EXPECT_EQ(e.failures()[k].message, "bad " + std::to_string(10 * k + 3));
      }
    }
  }
  EXPECT_EQ(pool.map([](int x) { return x; }, iota_vec(5)).size(), 5u);  // still usable
}

TEST(ThreadPool, CpuIdsPinEachWorkerOrAllWorkers) {
  std::vector<int> cpus = allowed_cpus();
  // One core per worker.
  {
    std::vector<std::vector<int>> per;
    for (int c : cpus) per.push_back({c});
    ThreadPool pool({.n_jobs = static_cast<int>(cpus.size()), .cpu_ids = per});
    auto seen = pool.map([](Worker& w, int) { return std::make_pair(w.id(), thread_cpus()); }, iota_vec(200),
                         {.chunk_size = 1});
    for (auto& [id, set] : seen) EXPECT_EQ(set, per[static_cast<std::size_t>(id)]) << "worker " << id;
  }
  // One set for all.
  {
    std::vector<int> set{cpus.front()};
    ThreadPool pool({.n_jobs = 2, .cpu_ids = {set}});
    auto seen = pool.map([](int) { return thread_cpus(); }, iota_vec(50), {.chunk_size = 1});
    for (auto& s : seen) EXPECT_EQ(s, set);
  }
  try {
    ThreadPool pool({.n_jobs = 1, .cpu_ids = {{100000}}});
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("CPU 100000"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ThreadPool({.n_jobs = 1, .cpu_ids = {{-1}}}), UsageError);
  EXPECT_THROW(ThreadPool({.n_jobs = 3, .cpu_ids = {{0}, {0}}}), UsageError);
}

TEST(ThreadPool, MaxLoadAverageRunsTheMapSeriallyInTheCaller) {
  double load = 5.0;
  ThreadPool pool({.n_jobs = 2, .max_load_average = 1.0, .load_reader = [&] { return load; }});
  auto ids = pool.map([](Worker& w, int) { return w.id(); }, iota_vec(100), {.chunk_size = 1});
  EXPECT_TRUE(std::all_of(ids.begin(), ids.end(), [](int id) { return id == -1; }));
  EXPECT_EQ(pool.apply([](Worker& w) { return w.id(); }), -1);
  load = 0.2;
  ids = pool.map([](Worker& w, int) { return w.id(); }, iota_vec(100), {.chunk_size = 1});
  EXPECT_TRUE(std::all_of(ids.begin(), ids.end(), [](int id) { return id >= 0; }));
}

TEST(ThreadPool, ATaskCanOpenANestedPool) {
  ThreadPool outer({.n_jobs = 2});
  auto sums = outer.map(
      [](int x) {
        ThreadPool inner({.n_jobs = 2});
        auto v = inner.map([x](int y) { return x * y; }, iota_vec(10));
        return std::accumulate(v.begin(), v.end(), 0);
      },
      iota_vec(4), {.chunk_size = 1});
  EXPECT_EQ(sums, (std::vector<int>{0, 45, 90, 135}));
}

TEST(ThreadPool, ProgressReportsCountRateAndEnd) {
  ThreadPool pool({.n_jobs = 2});
  std::vector<Progress> seen;
  pool.map([](int x) { return x; }, iota_vec(1000),
           {.chunk_size = 10, .progress = [&](const Progress& p) { seen.push_back(p); },
            .progress_interval = std::chrono::milliseconds(0)});
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen.back().finished);
  EXPECT_EQ(seen.back().done, 1000u);
  for (std::size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i].done, seen[i - 1].done);
  std::string line = format_progress(seen.back());
  EXPECT_NE(line.find("1000/1000"), std::string::npos) << line;
  EXPECT_NE(line.find("100%"), std::string::npos) << line;
  std::ostringstream out;
  progress_bar(out)(seen.back());
  EXPECT_NE(out.str().find("/s"), std::string::npos);
}

TEST(ThreadPool, InsightsCountEveryElementAndKeepTheFiveSlowest) {
  ThreadPool pool({.n_jobs = 2, .enable_insights = true});
  std::list<int> in;
  for (int i = 0; i < 400; ++i) in.push_back(i);
  pool.map([](int x) { return x; }, in, {.chunk_size = 8});
  Insights ins = pool.insights();
  ASSERT_EQ(ins.workers.size(), 2u);
  std::uint64_t elements = 0, chunks = 0;
  for (auto& w : ins.workers) {
    elements += w.elements;
    chunks += w.chunks;
  }
  EXPECT_EQ(elements, 400u);
  EXPECT_EQ(chunks, 50u);
  ASSERT_EQ(ins.slowest.size(), 5u);
  for (std::size_t i = 1; i < 5; ++i) EXPECT_GE(ins.slowest[i - 1].seconds, ins.slowest[i].seconds);
  EXPECT_NE(format_insights(ins).find("slowest"), std::string::npos);
}

TEST(ThreadPool, TaskTimeoutNeedsAProcessPool) {
  EXPECT_THROW(ThreadPool({.n_jobs = 1, .task_timeout = std::chrono::milliseconds(10)}), UsageError);
}

TEST(ThreadPool, SharedObjectsAreReachableFromTasks) {
  auto table = std::make_shared<const std::vector<int>>(iota_vec(100));
  ThreadPool pool({.n_jobs = 2, .shared_objects = table});
  auto out = pool.map([](Worker& w, int i) { return w.shared<std::vector<int>>()[static_cast<std::size_t>(i)]; },
                      iota_vec(100));
  EXPECT_EQ(out, iota_vec(100));
}

}  // namespace
}  // namespace mpmux
