// Requestor affinity: the queue's dispatch rule, and a pool whose workers prefer their own
// requestor's tasks, take others' work when idle, and let nobody starve.
#include <gtest/gtest.h>

#include <algorithm>
#include <any>
#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "mpmux/process_pool.hpp"
#include "mpmux/thread_pool.hpp"
#include "pool/task_queue.hpp"
#include "pool_test_support.hpp"
#include "test_support.hpp"

namespace mpmux {
namespace {

using pool_detail::TaskQueue;
using test::BoardScope;
using test::usage_error_message;
using test::SharedBoard;
using test::wait_until;
using Clock = TaskQueue::Clock;
using std::chrono::milliseconds;

// ---- The rule, on the queue alone, with an explicit clock -------------------------------

int pop_value(TaskQueue& q, int worker, Clock::time_point now) {
  std::any out;
  if (!q.pop(worker, out, now)) return -1;
  return std::any_cast<int>(out);
}

TEST(TaskQueue, WithoutBindingsItIsAFifoWhateverTheRequestor) {
  TaskQueue q;
  EXPECT_FALSE(q.has_affinity());
  auto t = Clock::now();
  for (int v = 0; v < 6; ++v) q.push(v, v % 3, t);
  EXPECT_EQ(q.size(), 6u);
  for (int v = 0; v < 6; ++v) EXPECT_EQ(pop_value(q, v % 2, t), v);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(pop_value(q, 0, t), -1);
}

TEST(TaskQueue, ABoundWorkerTakesItsRequestorsOldestTaskFirst) {
  TaskQueue q({0, 1}, std::chrono::hours(1));
  ASSERT_TRUE(q.has_affinity());
  EXPECT_EQ(q.binding(0), 0);
  EXPECT_EQ(q.binding(1), 1);
  EXPECT_EQ(q.binding(7), -1);
  auto t = Clock::now();
  // Requestor 1's tasks are older than requestor 0's, yet worker 0 takes its own first.
  q.push(10, 1, t);
  q.push(11, 1, t);
  q.push(0, 0, t);
  q.push(1, 0, t);
  EXPECT_EQ(pop_value(q, 0, t), 0);
  EXPECT_EQ(pop_value(q, 0, t), 1);
  EXPECT_EQ(pop_value(q, 1, t), 10);
  EXPECT_EQ(pop_value(q, 1, t), 11);
}

TEST(TaskQueue, AnIdleBoundWorkerTakesTheOldestTaskOfAnyone) {
  TaskQueue q({0, 1}, std::chrono::hours(1));
  auto t = Clock::now();
  q.push(20, 2, t);  // no worker is bound to requestor 2
  q.push(0, 0, t);
  q.push(1, 0, t);
  EXPECT_EQ(pop_value(q, 1, t), 20);  // nothing of requestor 1: the oldest of all
  EXPECT_EQ(pop_value(q, 1, t), 0);
  EXPECT_EQ(pop_value(q, 0, t), 1);
}

TEST(TaskQueue, AnUnboundWorkerTakesTheOldest) {
  TaskQueue q({0, -1}, std::chrono::hours(1));
  auto t = Clock::now();
  q.push(5, 5, t);
  q.push(0, 0, t);
  EXPECT_EQ(pop_value(q, 1, t), 5);
  EXPECT_EQ(pop_value(q, 1, t), 0);
}

TEST(TaskQueue, ATaskWaitingLongerThanThePatienceGoesToTheNextFreeWorker) {
  TaskQueue q({0, 1}, milliseconds(100));
  auto t = Clock::now();
  q.push(20, 2, t);
  q.push(0, 0, t + milliseconds(10));
  q.push(1, 0, t + milliseconds(20));
  // At 100 ms the old task has waited exactly the patience, not longer: own work first.
  EXPECT_EQ(pop_value(q, 0, t + milliseconds(100)), 0);
  // Past the patience the oldest task of all goes first, then the worker's own again.
  EXPECT_EQ(pop_value(q, 0, t + milliseconds(101)), 20);
  EXPECT_EQ(pop_value(q, 0, t + milliseconds(102)), 1);
}

TEST(TaskQueue, TheOldestTaskIsFoundAcrossRequestors) {
  TaskQueue q({0, 1, 2}, milliseconds(0));
  auto t = Clock::now();
  q.push(2, 2, t);
  q.push(1, 1, t);
  q.push(0, 0, t);
  q.push(9, 9, t);
  // Patience 0: every task that waited at all goes oldest first, whoever is bound to what.
  auto later = t + milliseconds(1);
  EXPECT_EQ(pop_value(q, 0, later), 2);
  EXPECT_EQ(pop_value(q, 0, later), 1);
  EXPECT_EQ(pop_value(q, 1, later), 0);
  EXPECT_EQ(pop_value(q, 2, later), 9);
  EXPECT_TRUE(q.empty());
}

TEST(TaskQueue, PopPreferredTakesOnlyTheWorkersOwnOrAnOverdueTask) {
  TaskQueue q({0, 1, -1}, milliseconds(100));
  auto t = Clock::now();
  std::any out;
  q.push(20, 2, t);
  q.push(10, 1, t + milliseconds(10));
  EXPECT_FALSE(q.pop_preferred(0, out, t + milliseconds(50))) << "nothing of requestor 0, nothing overdue";
  EXPECT_FALSE(q.pop_preferred(2, out, t + milliseconds(500))) << "an unbound worker prefers nothing";
  ASSERT_TRUE(q.pop_preferred(1, out, t + milliseconds(50)));
  EXPECT_EQ(std::any_cast<int>(out), 10);
  // Past the patience the overdue task is anyone's, so even worker 0 takes it.
  ASSERT_TRUE(q.pop_preferred(0, out, t + milliseconds(101)));
  EXPECT_EQ(std::any_cast<int>(out), 20);
  EXPECT_TRUE(q.empty());
  TaskQueue plain;
  plain.push(1, 0, t);
  EXPECT_FALSE(plain.pop_preferred(0, out, t)) << "without bindings nobody prefers anything";
}

TEST(TaskQueue, RemoveIfDropsTheMatchingTasksOfEveryRequestor) {
  TaskQueue q({0, 1}, std::chrono::hours(1));
  auto t = Clock::now();
  for (int v = 0; v < 9; ++v) q.push(v, v % 3, t);  // requestors 0, 1 and 2 (no lane of its own)
  std::vector<int> removed;
  q.remove_if([](const std::any& a) { return std::any_cast<int>(a) % 2 == 0; },
              [&](std::any&& a) { removed.push_back(std::any_cast<int>(a)); });
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<int>{0, 2, 4, 6, 8}));
  EXPECT_EQ(q.size(), 4u);
  // What is left keeps its order and its requestor.
  EXPECT_EQ(pop_value(q, 1, t), 1);
  EXPECT_EQ(pop_value(q, 1, t), 7);
  EXPECT_EQ(pop_value(q, 0, t), 3);
  EXPECT_EQ(pop_value(q, 0, t), 5);
  EXPECT_TRUE(q.empty());
}

// ---- Pools ----------------------------------------------------------------------------
// The tasks are captureless and talk through a board in shared memory, so that the same tests
// run on the ThreadPool and on the ProcessPool (whose workers are forked processes).

constexpr int kMaxTasks = 256;

struct AffinityBoard {
  std::atomic<int> held{0};
  std::atomic<bool> release{false};
  std::atomic<int> arrived{0};
  std::atomic<int> next_order{0};
  std::atomic<bool> started_on[2];
  std::atomic<int> started{0};
  std::atomic<int> worker_of[kMaxTasks];
  std::atomic<int> order_of[kMaxTasks];
  AffinityBoard() {
    for (auto& w : worker_of) w = -1;
  }
};
AffinityBoard* g_board = nullptr;


// Keeps its worker busy until the board says release; returns the worker id.
int hold(Worker& w) {
  ++g_board->held;
  if (!wait_until([] { return g_board->release.load(); })) return -1;
  return w.id();
}

// Notes which worker ran task `tag` and in which order. A worker's first task waits until the
// other worker started one too, so that neither can run every task before the other looks.
int record(Worker& w, int tag) {
  if (!g_board->started_on[w.id()].exchange(true)) {
    ++g_board->started;
    if (!wait_until([] { return g_board->started.load() >= 2; })) return -1;
  }
  g_board->worker_of[tag] = w.id();
  g_board->order_of[tag] = g_board->next_order++;
  return tag;
}

// Returns the worker id once both parties of a 2-party barrier arrived; -1 on timeout.
int meet(Worker& w, int) {
  ++g_board->arrived;
  if (!wait_until([] { return g_board->arrived.load() >= 2; })) return -1;
  return w.id();
}

template <class Pool>
class PoolAffinity : public ::testing::Test {};
using PoolTypes = ::testing::Types<ThreadPool, ProcessPool>;
TYPED_TEST_SUITE(PoolAffinity, PoolTypes);

// Both workers are held while two submitters queue all their tasks; once released, each
// worker runs its own requestor's tasks until there are none left, and only then others'.
TYPED_TEST(PoolAffinity, EachWorkerRunsItsRequestorsTasksBeforeOthers) {
  constexpr int kEach = 12;
  BoardScope<AffinityBoard> board(g_board);
  TypeParam pool({.n_jobs = 2, .worker_requestors = {0, 1}, .affinity_patience = std::chrono::hours(1)});
  auto h0 = pool.apply_async(hold);
  auto h1 = pool.apply_async(hold);
  ASSERT_TRUE(wait_until([&] { return board->held.load() == 2; })) << "the workers were not both held";

  std::vector<int> tags_a(kEach);
  std::iota(tags_a.begin(), tags_a.end(), 0);
  std::vector<int> got_a, got_b;
  // Submitter A maps with MapOptions::requestor, submitter B applies with Requestor{1}.
  std::thread a([&] {
    got_a =
        pool.map(record, tags_a, {.chunk_size = 1, .max_tasks_active = std::uint64_t{kEach}, .requestor = 0});
  });
  std::thread b([&] {
    std::vector<std::future<int>> futures;
    for (int tag = kEach; tag < 2 * kEach; ++tag)
      futures.push_back(pool.apply_async(Requestor{1}, record, tag));
    for (auto& f : futures) got_b.push_back(f.get());
  });
  bool all_queued = wait_until([&] { return pool.queued_tasks() == std::size_t{2 * kEach}; });
  board->release = true;
  a.join();
  b.join();
  ASSERT_TRUE(all_queued) << "queued: " << pool.queued_tasks();
  std::vector<int> holders{h0.get(), h1.get()};
  std::sort(holders.begin(), holders.end());
  EXPECT_EQ(holders, (std::vector<int>{0, 1}));
  EXPECT_EQ(got_a, tags_a);
  ASSERT_EQ(got_b.size(), std::size_t{kEach});
  for (int k = 0; k < kEach; ++k) EXPECT_EQ(got_b[static_cast<std::size_t>(k)], kEach + k);

  for (int w = 0; w < 2; ++w) {
    std::vector<int> ran;  // the tags worker w ran, in the order it ran them
    for (int tag = 0; tag < 2 * kEach; ++tag)
      if (board->worker_of[tag] == w) ran.push_back(tag);
    std::sort(ran.begin(), ran.end(), [&](int x, int y) { return board->order_of[x] < board->order_of[y]; });
    auto own = [&](int tag) { return (tag < kEach ? 0 : 1) == w; };
    ASSERT_FALSE(ran.empty()) << "worker " << w << " ran nothing";
    EXPECT_TRUE(own(ran.front())) << "worker " << w << " started with task " << ran.front();
    // Once the worker ran someone else's task, its own queue was empty: no own task follows.
    auto first_foreign = std::find_if_not(ran.begin(), ran.end(), own);
    EXPECT_TRUE(std::none_of(first_foreign, ran.end(), own))
        << "worker " << w << " went back to its own tasks";
  }
}

// Only requestor 0 submits, and its two tasks must run at the same time to finish: so the
// worker bound to requestor 1, being idle, took requestor 0's work.
TYPED_TEST(PoolAffinity, AnIdleWorkerTakesOtherRequestorsWork) {
  BoardScope<AffinityBoard> board(g_board);
  TypeParam pool({.n_jobs = 2, .worker_requestors = {0, 1}, .affinity_patience = std::chrono::hours(1)});
  auto ids = pool.map(meet, std::vector<int>{0, 1}, {.chunk_size = 1, .requestor = 0});
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int>{0, 1})) << "-1: a task waited in vain for the other";

  board->arrived = 0;
  auto f0 = pool.apply_async(Requestor{0}, meet, 0);
  auto f1 = pool.apply_async(Requestor{0}, meet, 1);
  std::vector<int> apply_ids{f0.get(), f1.get()};
  std::sort(apply_ids.begin(), apply_ids.end());
  EXPECT_EQ(apply_ids, (std::vector<int>{0, 1}));
}

int worker_id(Worker& w) { return w.id(); }

// With both workers free, a task goes to the one bound to its requestor, not to whichever is
// offered work first: the event loop offers each free bound worker its own requestor's tasks
// before it lets free workers take others'. Requestor 1 comes first in each pair, so offering
// in worker order would give it to worker 0. (A ThreadPool wakes the bound idle worker too, but
// a thread that just finished may take the task first, as an idle worker may: not exact.)
TEST(PoolAffinityProcess, AFreeWorkerBoundToTheRequestorGetsItsTask) {
  ProcessPool pool({.n_jobs = 2, .worker_requestors = {0, 1}, .affinity_patience = std::chrono::hours(1)});
  for (int i = 0; i < 40; ++i) {
    int r = 1 - i % 2;
    ASSERT_EQ(pool.apply(Requestor{r}, worker_id), r) << "round " << i;
  }
}

struct FloodBoard {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> done[2] = {};
};
FloodBoard* g_flood = nullptr;

int flood_task(int requestor) {
  std::this_thread::sleep_for(std::chrono::microseconds(200));  // the work of a flood task
  ++g_flood->done[requestor];
  return requestor;
}

int square(int x) { return x * x; }

// Requestors 0 and 1 keep their workers' queues full; requestor 2, which no worker prefers,
// still gets its map done (affinity_patience), and the floods stop because it is done.
TYPED_TEST(PoolAffinity, ARequestorWithoutWorkersIsNotStarved) {
  constexpr std::uint64_t kFloodLimit = 100000;  // ~10 s of flood: far beyond a fair wait
  SharedBoard<FloodBoard> board;
  g_flood = board.get();
  TypeParam pool({.n_jobs = 2, .worker_requestors = {0, 1}, .affinity_patience = milliseconds(2)});
  bool stopped_by_flag[2] = {false, false};
  auto flood = [&](int r) {
    std::deque<std::future<int>> window;
    std::uint64_t submitted = 0;
    while (submitted < kFloodLimit) {
      if (board->stop) {
        stopped_by_flag[r] = true;
        break;
      }
      while (window.size() < 16) {
        window.push_back(pool.apply_async(Requestor{r}, flood_task, r));
        ++submitted;
      }
      window.front().get();
      window.pop_front();
    }
    for (auto& f : window) f.get();
  };
  std::thread f0(flood, 0), f1(flood, 1);
  // Both queues are full before requestor 2 arrives.
  bool flooding = wait_until([&] { return board->done[0] >= 32 && board->done[1] >= 32; });
  std::uint64_t before[2] = {board->done[0], board->done[1]};
  std::vector<int> in(20);
  std::iota(in.begin(), in.end(), 0);
  std::vector<int> out;
  try {
    out = pool.map(square, in, {.chunk_size = 1, .requestor = 2});
  } catch (...) {
    board->stop = true;
    f0.join();
    f1.join();
    throw;
  }
  std::uint64_t during[2] = {board->done[0] - before[0], board->done[1] - before[1]};
  board->stop = true;
  f0.join();
  f1.join();
  g_flood = nullptr;
  ASSERT_TRUE(flooding);
  ASSERT_EQ(out.size(), in.size());
  for (int x : in) EXPECT_EQ(out[static_cast<std::size_t>(x)], x * x);
  EXPECT_TRUE(stopped_by_flag[0] && stopped_by_flag[1]) << "a flood ran out before requestor 2 was served";
  // The floods went on while requestor 2's map ran, so its workers had their own work.
  EXPECT_GT(during[0], 0u);
  EXPECT_GT(during[1], 0u);
}

TEST(PoolAffinityOptions, BadValuesAreUsageErrorsNamingTheOption) {
  EXPECT_NE(
      usage_error_message([] { ThreadPool({.n_jobs = 2, .worker_requestors = {0}}); }).find("worker_requestors has 1"),
      std::string::npos);
  // With a cap, one entry per worker the pool may grow to.
  EXPECT_NE(usage_error_message([] {
              ThreadPool({.n_jobs = 1, .worker_requestors = {0}, .max_n_jobs = 2});
            }).find("max_n_jobs = 2"),
            std::string::npos);
  EXPECT_NE(usage_error_message([] {
              ThreadPool({.n_jobs = 2, .worker_requestors = {0, -2}});
            }).find("worker_requestors[1] = -2"),
            std::string::npos);
  EXPECT_NE(usage_error_message([] {
              ThreadPool({.n_jobs = 1, .worker_requestors = {0}, .affinity_patience = milliseconds(-1)});
            }).find("affinity_patience"),
            std::string::npos);
  // The ProcessPool checks the same before it forks anything.
  EXPECT_NE(usage_error_message([] {
              ProcessPool({.n_jobs = 2, .worker_requestors = {0, 1, 1}});
            }).find("ProcessPool: worker_requestors has 3"),
            std::string::npos);
  ThreadPool pool({.n_jobs = 1, .worker_requestors = {0}});
  EXPECT_NE(usage_error_message([&] {
              pool.map(square, std::vector<int>{1}, {.requestor = -2});
            }).find("MapOptions::requestor"),
            std::string::npos);
  EXPECT_NE(usage_error_message([&] { pool.apply(Requestor{-5}, square, 1); }).find("Requestor::id"), std::string::npos);
  // Still usable, and a requestor nobody is bound to is served like anyone.
  EXPECT_EQ(pool.apply(Requestor{7}, square, 3), 9);
  EXPECT_EQ(pool.map(square, std::vector<int>{1, 2}, {.requestor = 3}), (std::vector<int>{1, 4}));
}

}  // namespace
}  // namespace mpmux
