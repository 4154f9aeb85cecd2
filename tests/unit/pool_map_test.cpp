// What every pool does, typed over ThreadPool and ProcessPool (one front, BasicPool, over two
// engines): the map family, chunking, workers' life cycle, errors, pinning, load gating,
// progress and insights. Tasks are captureless, as a ProcessPool needs; what they share with
// the test lives in shared memory mapped before the pool (pool_test_support.hpp).
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/serialization/utility.hpp>
#include <boost/serialization/vector.hpp>
#include <list>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpmux/process_pool.hpp"
#include "mpmux/thread_pool.hpp"
#include "pool_test_support.hpp"

namespace mpmux {
namespace {

using test::allowed_cpus;
using test::BoardScope;
using test::CountingGenerator;
using test::thread_cpus;

std::vector<int> iota_vec(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

int square(int x) { return x * x; }

// map() over a sized random-access input is handed to the workers whole (the direct path);
// with max_tasks_active the same call goes through the chunked path, fed by the caller's
// thread. Tests of behaviour both must share run both ways.
MapOptions fed_by(bool direct, MapOptions options) {
  if (!direct) options.max_tasks_active = 8;
  return options;
}
const char* path_name(bool direct) { return direct ? "direct map" : "map fed by the caller"; }

// What tasks share with the test, in shared memory.
struct Board {
  std::atomic<int> counter{0};
};
Board* g_board = nullptr;

template <class Pool>
class PoolMap : public ::testing::Test {};
using PoolTypes = ::testing::Types<ThreadPool, ProcessPool>;
TYPED_TEST_SUITE(PoolMap, PoolTypes);

TEST(GuidedChunks, ShrinkTowardTheEndAndRespectTheCap) {
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

TYPED_TEST(PoolMap, MapReturnsResultsInInputOrder) {
  TypeParam pool({.n_jobs = 2});
  auto in = iota_vec(20000);
  auto out = pool.map([](int x) { return 3 * x + 1; }, in);
  ASSERT_EQ(out.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(out[i], 3 * in[i] + 1) << i;
  EXPECT_EQ(pool.map(square, iota_vec(5)), (std::vector<int>{0, 1, 4, 9, 16}));
}

TYPED_TEST(PoolMap, MapOverAListGoesThroughChunksAndKeepsOrder) {
  TypeParam pool({.n_jobs = 2});
  std::list<std::string> in;
  for (int i = 0; i < 3000; ++i) in.push_back(std::to_string(i));
  auto out = pool.map([](const std::string& s) { return s + "!"; }, in, {.chunk_size = 7});
  ASSERT_EQ(out.size(), 3000u);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)], std::to_string(i) + "!");
  std::list<std::string> words{"a", "bb", "ccc"};
  auto doubled = pool.map([](const std::string& s) { return s + s; }, words, {.chunk_size = 1});
  EXPECT_EQ(doubled, (std::vector<std::string>{"aa", "bbbb", "cccccc"}));
}

TYPED_TEST(PoolMap, MapUnorderedReturnsEveryResultOnce) {
  TypeParam pool({.n_jobs = 3});
  auto out = pool.map_unordered([](int x) { return x * 2; }, iota_vec(5000), {.chunk_size = 3});
  std::sort(out.begin(), out.end());
  ASSERT_EQ(out.size(), 5000u);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)], 2 * i);
  auto neg = pool.map_unordered([](int x) { return -x; }, iota_vec(3000), {.chunk_size = 13});
  std::sort(neg.begin(), neg.end());
  ASSERT_EQ(neg.size(), 3000u);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(neg[static_cast<std::size_t>(i)], i - 2999);
}

// Element 0 is held until three later elements are done, so completion order differs from
// input order: imap must still yield 0 first, imap_unordered must not.
TYPED_TEST(PoolMap, ImapKeepsInputOrderAndImapUnorderedFollowsCompletion) {
  for (bool ordered : {true, false}) {
    BoardScope<Board> board(g_board);
    TypeParam pool({.n_jobs = 2});
    auto task = [](int x) {
      if (x == 0) {
        while (g_board->counter.load() < 3) std::this_thread::yield();
      } else {
        g_board->counter.fetch_add(1);
      }
      return x;
    };
    std::vector<int> got;
    if (ordered) {
      for (int v : pool.imap(task, iota_vec(20), {.chunk_size = 1})) got.push_back(v);
      EXPECT_EQ(got, iota_vec(20));
    } else {
      for (int v : pool.imap_unordered(task, iota_vec(20), {.chunk_size = 1})) got.push_back(v);
      ASSERT_EQ(got.size(), 20u);
      EXPECT_NE(got.front(), 0);
      std::sort(got.begin(), got.end());
      EXPECT_EQ(got, iota_vec(20));
    }
  }
}

TYPED_TEST(PoolMap, ApplyAndApplyAsyncReturnValuesAndErrors) {
  BoardScope<Board> board(g_board);
  TypeParam pool({.n_jobs = 2});
  EXPECT_EQ(pool.apply([](int a, int b) { return a + b; }, 2, 40), 42);
  EXPECT_EQ(pool.apply([](int a, int b) { return a * b; }, 6, 7), 42);
  auto f1 = pool.apply_async([](const std::string& s) { return s.size(); }, std::string("hello"));
  auto f2 =
      pool.apply_async([](const std::string& s, int k) { return s.substr(0, static_cast<std::size_t>(k)); },
                       std::string("process"), 4);
  auto f3 = pool.apply_async([](Worker& w, int x) { return w.id() >= 0 ? x : -1; }, 7);
  auto f4 = pool.apply_async([](Worker& w) { return w.id(); });
  auto f5 = pool.apply_async([] { g_board->counter.store(77); });
  EXPECT_EQ(f1.get(), 5u);
  EXPECT_EQ(f2.get(), "proc");
  EXPECT_EQ(f3.get(), 7);
  int id = f4.get();
  EXPECT_TRUE(id == 0 || id == 1) << id;
  f5.get();
  EXPECT_EQ(g_board->counter.load(), 77);
  auto bad = pool.apply_async([]() -> int { throw std::runtime_error("no luck"); });
  try {
    bad.get();
    FAIL() << "expected TaskError";
  } catch (const TaskError& e) {
    ASSERT_EQ(e.failures().size(), 1u);
    EXPECT_EQ(e.failures()[0].index, 0u);
    EXPECT_EQ(e.failures()[0].message, "no luck");
  }
  try {
    pool.apply([]() -> int { throw std::runtime_error("apply failed"); });
    FAIL() << "expected TaskError";
  } catch (const TaskError& e) {
    ASSERT_EQ(e.failures().size(), 1u);
    EXPECT_EQ(e.failures()[0].message, "apply failed");
  }
}

TYPED_TEST(PoolMap, BadOptionsAreUsageErrors) {
  EXPECT_THROW(TypeParam({.n_jobs = 0}), UsageError);
  EXPECT_THROW(TypeParam({.n_jobs = -3}), UsageError);
  EXPECT_THROW(TypeParam({.n_jobs = -1}), UsageError);
  try {
    TypeParam({.n_jobs = 0});
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("n_jobs"), std::string::npos) << e.what();
  }
  EXPECT_THROW(TypeParam({.n_jobs = 1, .cpu_ids = {{100000}}}), UsageError);
  TypeParam pool({.n_jobs = 1});
  EXPECT_THROW(pool.map(square, iota_vec(10), {.chunk_size = 0}), UsageError);
  std::list<int> l{1, 2, 3};
  EXPECT_THROW(pool.map(square, l, {.chunk_size = 0}), UsageError);
  EXPECT_THROW(pool.map(square, l, {.max_tasks_active = 0}), UsageError);
  // The pool stays usable after a rejected call.
  EXPECT_EQ(pool.map([](int x) { return x + 1; }, l), (std::vector<int>{2, 3, 4}));
  EXPECT_EQ(pool.map(square, iota_vec(3)), (std::vector<int>{0, 1, 4}));
}

TYPED_TEST(PoolMap, IterableLenGivesAGeneratorItsTotal) {
  TypeParam pool({.n_jobs = 2});
  std::atomic<std::uint64_t> produced{0};
  CountingGenerator gen(500, produced);
  Progress last;
  auto out = pool.map([](std::uint64_t x) { return x; }, gen,
                      {.iterable_len = 500,
                       .progress = [&](const Progress& p) { last = p; },
                       .progress_interval = std::chrono::milliseconds(0)});
  ASSERT_EQ(out.size(), 500u);
  for (std::uint64_t i = 0; i < 500; ++i) ASSERT_EQ(out[i], i);
  EXPECT_TRUE(last.finished);
  EXPECT_EQ(last.total, 500u);
  EXPECT_EQ(last.done, 500u);
}

// A generator of 10^9 items: the pool never reads more than max_tasks_active chunks ahead of
// what the consumer took, and dropping the stream stops reading.
TYPED_TEST(PoolMap, MaxTasksActiveBoundsHowFarTheProducerRunsAhead) {
  TypeParam pool({.n_jobs = 2});
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

TYPED_TEST(PoolMap, WorkerLifespanReplacesTheWorkerAndResetsItsState) {
  TypeParam pool({.n_jobs = 1, .worker_lifespan = 2, .worker_exit = [](Worker& w) -> ExitValue {
                    return w.state<int>();
                  }});
  auto out = pool.map([](Worker& w, int) { return ++w.state<int>(); }, iota_vec(20), {.chunk_size = 1});
  std::vector<int> expect;
  for (int i = 0; i < 10; ++i) expect.insert(expect.end(), {1, 2});
  EXPECT_EQ(out, expect);
  pool.stop();
  // Ten workers retired after two chunks each; a ProcessPool's eleventh (0 chunks) exists only
  // if its predecessor's death was seen before stop().
  auto exits = pool.template exit_values<int>();
  ASSERT_GE(exits.size(), 10u);
  ASSERT_LE(exits.size(), 11u);
  EXPECT_EQ(std::accumulate(exits.begin(), exits.end(), 0), 20);
}

TYPED_TEST(PoolMap, WorkerInitAndExitSeeTheWorkerIdAndReturnValues) {
  TypeParam pool({.n_jobs = 3,
                  .worker_init = [](Worker& w) { w.state<int>() = 100 * w.id(); },
                  .worker_exit = [](Worker& w) -> ExitValue { return w.state<int>(); }});
  auto ids = pool.map([](Worker& w, int) { return w.id(); }, iota_vec(300), {.chunk_size = 1});
  for (int id : ids) ASSERT_TRUE(id >= 0 && id < 3) << id;
  pool.stop();
  auto exits = pool.template exit_values<int>();
  std::sort(exits.begin(), exits.end());
  EXPECT_EQ(exits, (std::vector<int>{0, 100, 200}));
  EXPECT_THROW(pool.map(square, iota_vec(3)), UsageError);
}

TYPED_TEST(PoolMap, PerWorkerStatePersistsAcrossCalls) {
  TypeParam pool({.n_jobs = 2,
                  .worker_init = [](Worker& w) { w.state<int>() = 1000 * (w.id() + 1); },
                  .worker_exit = [](Worker& w) -> ExitValue { return w.state<int>(); }});
  auto count = [](Worker& w, int) {
    ++w.state<int>();
    return w.id();
  };
  auto ids = pool.map(count, iota_vec(100), {.chunk_size = 5});
  for (int id : ids) ASSERT_TRUE(id == 0 || id == 1);
  pool.map(count, iota_vec(50), {.chunk_size = 5});
  pool.stop();
  auto exits = pool.template exit_values<int>();
  ASSERT_EQ(exits.size(), 2u);
  EXPECT_EQ(exits[0] + exits[1], 1000 + 2000 + 150);
  EXPECT_THROW(pool.map(square, iota_vec(3)), UsageError);
}

TYPED_TEST(PoolMap, ExceptionsComeBackWithIndexAndMessage) {
  TypeParam pool({.n_jobs = 2});
  auto task = [](int x) {
    if (x % 10 == 3) throw std::runtime_error("bad " + std::to_string(x));
    return x;
  };
  for (bool direct : {true, false}) {
    SCOPED_TRACE(path_name(direct));
    try {
      pool.map(task, iota_vec(100), fed_by(direct, {.chunk_size = 4}));
      FAIL() << "expected TaskError";
    } catch (const TaskError& e) {
      ASSERT_EQ(e.failures().size(), 1u);
      std::uint64_t i = e.failures()[0].index;
      EXPECT_EQ(i % 10, 3u);
      EXPECT_EQ(e.failures()[0].message, "bad " + std::to_string(i));
      EXPECT_NE(std::string(e.what()).find("element " + std::to_string(i)), std::string::npos);
    }
    try {
      pool.map(task, iota_vec(100), fed_by(direct, {.chunk_size = 4, .on_error = OnError::report_all}));
      FAIL() << "expected TaskError";
    } catch (const TaskError& e) {
      ASSERT_EQ(e.failures().size(), 10u);
      for (std::size_t k = 0; k < 10; ++k) {
        EXPECT_EQ(e.failures()[k].index, 10 * k + 3);
        EXPECT_EQ(e.failures()[k].kind, FailureKind::exception);
        EXPECT_EQ(e.failures()[k].message, "bad " + std::to_string(10 * k + 3));
      }
    }
    // Failures amid runs of tiny results (which a ProcessPool sends without a header each).
    std::vector<std::uint64_t> in(5000);
    std::iota(in.begin(), in.end(), 0);
    try {
      pool.map(
          [](std::uint64_t x) -> std::uint64_t {
            return x % 1000 == 999 ? throw std::runtime_error("odd") : x;
          },
          in, fed_by(direct, {.chunk_size = 700, .on_error = OnError::report_all}));
      FAIL() << "expected TaskError";
    } catch (const TaskError& e) {
      ASSERT_EQ(e.failures().size(), 5u);
      for (std::size_t k = 0; k < 5; ++k) EXPECT_EQ(e.failures()[k].index, 1000 * k + 999);
    }
    EXPECT_EQ(pool.map(square, iota_vec(4), fed_by(direct, {})),
              (std::vector<int>{0, 1, 4, 9}));  // still usable
  }
}

TYPED_TEST(PoolMap, CpuIdsPinEachWorkerOrAllWorkers) {
  std::vector<int> cpus = allowed_cpus();
  {
    std::vector<std::vector<int>> per;
    for (int c : cpus) per.push_back({c});
    TypeParam pool({.n_jobs = static_cast<int>(cpus.size()), .cpu_ids = per});
    auto seen = pool.map([](Worker& w, int) { return std::make_pair(w.id(), thread_cpus()); }, iota_vec(200),
                         {.chunk_size = 1});
    for (auto& [id, set] : seen) EXPECT_EQ(set, per[static_cast<std::size_t>(id)]) << "worker " << id;
  }
  {
    std::vector<int> set{cpus.back()};
    TypeParam pool({.n_jobs = 2, .cpu_ids = {set}});
    auto seen = pool.map([](int) { return thread_cpus(); }, iota_vec(50), {.chunk_size = 1});
    for (auto& s : seen) EXPECT_EQ(s, set);
  }
  try {
    TypeParam pool({.n_jobs = 1, .cpu_ids = {{100000}}});
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("CPU 100000"), std::string::npos) << e.what();
  }
  EXPECT_THROW(TypeParam({.n_jobs = 1, .cpu_ids = {{-1}}}), UsageError);
  EXPECT_THROW(TypeParam({.n_jobs = 3, .cpu_ids = {{0}, {0}}}), UsageError);
}

// Serially in the caller: worker id -1, in the caller's process.
TYPED_TEST(PoolMap, MaxLoadAverageRunsTheMapSeriallyInTheCaller) {
  static double load;  // read by a captureless load_reader
  load = 5.0;
  TypeParam pool({.n_jobs = 2, .max_load_average = 1.0, .load_reader = [] { return load; }});
  auto ran = pool.map([](Worker& w, int) { return std::make_pair(w.id(), static_cast<int>(getpid())); },
                      iota_vec(100), {.chunk_size = 1});
  for (auto& [id, pid] : ran) {
    EXPECT_EQ(id, -1);
    EXPECT_EQ(pid, getpid());
  }
  auto plain = pool.map([](Worker& w, int) { return w.id(); }, iota_vec(10));  // the sized path too
  EXPECT_TRUE(std::all_of(plain.begin(), plain.end(), [](int id) { return id == -1; }));
  EXPECT_EQ(pool.apply([](Worker& w) { return w.id(); }), -1);
  load = 0.2;
  auto on_workers =
      pool.map([](Worker& w, int) { return std::make_pair(w.id(), static_cast<int>(getpid())); },
               iota_vec(100), {.chunk_size = 1});
  for (auto& [id, pid] : on_workers) {
    EXPECT_GE(id, 0);
    if constexpr (std::is_same_v<TypeParam, ProcessPool>) EXPECT_NE(pid, getpid());
  }
}

TYPED_TEST(PoolMap, ATaskCanOpenANestedPool) {
  TypeParam outer({.n_jobs = 2});
  auto sums = outer.map(
      [](int x) {
        ThreadPool inner({.n_jobs = 2});
        auto v = inner.map(square, iota_vec(x + 1));
        return std::accumulate(v.begin(), v.end(), 0);
      },
      iota_vec(4), {.chunk_size = 1});
  EXPECT_EQ(sums, (std::vector<int>{0, 1, 5, 14}));
}

TYPED_TEST(PoolMap, AnEmptyMapReturnsAtOnceAndReportsItsEnd) {
  TypeParam pool({.n_jobs = 2});
  for (bool direct : {true, false}) {
    SCOPED_TRACE(path_name(direct));
    std::vector<Progress> seen;
    auto out = pool.map(square, std::vector<int>{},
                        fed_by(direct, {.progress = [&](const Progress& p) { seen.push_back(p); }}));
    EXPECT_TRUE(out.empty());
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_TRUE(seen[0].finished);
    EXPECT_EQ(seen[0].done, 0u);
  }
}

TYPED_TEST(PoolMap, ProgressReportsCountRateAndEnd) {
  TypeParam pool({.n_jobs = 2});
  for (bool direct : {true, false}) {
    SCOPED_TRACE(path_name(direct));
    std::vector<Progress> seen;
    pool.map(square, iota_vec(1000),
             fed_by(direct, {.chunk_size = 10,
                             .progress = [&](const Progress& p) { seen.push_back(p); },
                             .progress_interval = std::chrono::milliseconds(0)}));
    ASSERT_FALSE(seen.empty());
    EXPECT_TRUE(seen.back().finished);
    EXPECT_EQ(seen.back().done, 1000u);
    EXPECT_EQ(seen.back().total, 1000u);
    for (std::size_t i = 1; i < seen.size(); ++i) {
      EXPECT_GE(seen[i].done, seen[i - 1].done);
      EXPECT_FALSE(seen[i - 1].finished);
    }
    std::string line = format_progress(seen.back());
    EXPECT_NE(line.find("1000/1000"), std::string::npos) << line;
    EXPECT_NE(line.find("100%"), std::string::npos) << line;
    std::ostringstream out;
    progress_bar(out)(seen.back());
    EXPECT_NE(out.str().find("/s"), std::string::npos);
    EXPECT_EQ(out.str().back(), '\n');
  }
}

TYPED_TEST(PoolMap, InsightsCountEveryElementAndKeepTheFiveSlowest) {
  for (bool direct : {true, false}) {
    SCOPED_TRACE(path_name(direct));
    TypeParam pool({.n_jobs = 2, .enable_insights = true});
    pool.map(square, iota_vec(1000), fed_by(direct, {.chunk_size = 10}));
    std::list<int> in;
    for (int i = 0; i < 400; ++i) in.push_back(i);
    pool.map(square, in, {.chunk_size = 8});
    Insights ins = pool.insights();
    ASSERT_EQ(ins.workers.size(), 2u);
    std::uint64_t elements = 0, chunks = 0;
    for (auto& w : ins.workers) {
      elements += w.elements;
      chunks += w.chunks;
      EXPECT_GT(w.starting_s, 0.0);
    }
    EXPECT_EQ(elements, 1400u);
    EXPECT_EQ(chunks, 150u);
    ASSERT_EQ(ins.slowest.size(), 5u);
    for (std::size_t i = 1; i < 5; ++i) EXPECT_GE(ins.slowest[i - 1].seconds, ins.slowest[i].seconds);
    for (auto& t : ins.slowest) EXPECT_LT(t.index, 1000u);
    EXPECT_NE(format_insights(ins).find("slowest"), std::string::npos);
  }
}

TYPED_TEST(PoolMap, SharedObjectsAreReachableFromTasks) {
  auto table = std::make_shared<const std::vector<int>>(iota_vec(100));
  TypeParam pool({.n_jobs = 2, .shared_objects = table});
  auto out =
      pool.map([](Worker& w, int i) { return w.shared<std::vector<int>>()[static_cast<std::size_t>(i)]; },
               iota_vec(100));
  EXPECT_EQ(out, iota_vec(100));
}

}  // namespace
}  // namespace mpmux
