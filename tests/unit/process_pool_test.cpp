// ProcessPool: what only processes do - values crossing as bytes, the event loop feeding direct
// maps, crash recovery, copy-on-write sharing, timeouts, stopping, dying with the parent,
// leaving no zombie. What every pool does is in pool_map_test.cpp.
#include "mpmux/process_pool.hpp"

#include <dirent.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <chrono>
#include <fstream>
#include <list>
#include <mutex>
#include <numeric>
#include <random>
#include <ranges>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mpmux/thread_pool.hpp"
#include "pool_test_support.hpp"

namespace mpmux {
namespace {

std::vector<int> iota_vec(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// A counter in MAP_SHARED memory, mapped before any pool, so workers and test share it.
std::atomic<int>* shared_counter() {
  static auto* c = [] {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return new (p) std::atomic<int>(0);
  }();
  return c;
}

// map() over a sized random-access input runs in the pool's event loop (the direct path);
// with max_tasks_active the same call goes through the MapDriver, fed by the caller's thread.
// Tests of behaviour both must share run both ways.
MapOptions fed_by(bool direct, MapOptions options) {
  if (!direct) options.max_tasks_active = 8;
  return options;
}
const char* path_name(bool direct) { return direct ? "direct map" : "map fed by the caller"; }

// What the kill tests share with the workers, in MAP_SHARED memory mapped before any pool:
// elements completed (re-runs included) and kills done.
constexpr int kKillElements = 100000;
constexpr int kKills = 20;
struct KillGate {
  std::atomic<std::uint64_t> completed{0};
  std::atomic<int> kills_done{0};
  std::atomic<bool> started[kKillElements];
};
KillGate* kill_gate() {
  static auto* g = [] {
    void* p = mmap(nullptr, sizeof(KillGate), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return new (p) KillGate();
  }();
  return g;
}
std::uint64_t kill_threshold(int k) { return static_cast<std::uint64_t>(k) * kKillElements / (kKills + 1); }

// An element that waits while the completed count has reached the next kill's threshold, so
// that the map cannot outrun the killer (who kills at each threshold) and end early. A re-run
// does not wait: the kills should hit workers, not the same element again and again.
std::pair<int, std::uint64_t> gated_busy(int x) {
  KillGate* g = kill_gate();
  bool rerun = g->started[x].exchange(true);
  for (int k = g->kills_done.load(); !rerun && k < kKills && g->completed.load() >= kill_threshold(k + 1);
       k = g->kills_done.load()) {
    std::this_thread::yield();
  }
  std::uint64_t h = static_cast<std::uint64_t>(x);
  for (int k = 0; k < 200; ++k) h = h * 6364136223846793005ull + 1442695040888963407ull;
  g->completed.fetch_add(1);
  return {x, h};
}

struct Point {
  std::string name;
  std::vector<double> xs;
  template <class A>
  void serialize(A& a, unsigned) {
    a& name& xs;
  }
};

int square(int x) { return x * x; }

bool pid_alive(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

// Waits (poll on a pidfd, no sleep) until `pid` has exited; false after timeout_ms.
bool wait_gone(pid_t pid, int timeout_ms) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return true;  // already gone
  pollfd p{fd, POLLIN, 0};
  int r = poll(&p, 1, timeout_ms);
  close(fd);
  return r > 0;
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    pid_t pid = static_cast<pid_t>(atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream in("/proc/" + std::string(e->d_name) + "/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("PPid:", 0) == 0) {
        if (std::stoi(line.substr(5)) == parent) out.push_back(pid);
        break;
      }
    }
  }
  closedir(d);
  return out;
}

long pss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string key;
  long value = 0;
  while (in >> key) {
    if (key == "Pss:") {
      in >> value;
      return value;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return 0;
}

TEST(ProcessPool, MapCarriesResultsOfEveryKind) {
  ProcessPool pool({.n_jobs = 2});
  for (bool direct : {true, false}) {
    SCOPED_TRACE(path_name(direct));
    auto odd = pool.map([](int x) { return x % 2 == 1; }, iota_vec(3001), fed_by(direct, {.chunk_size = 64}));
    ASSERT_EQ(odd.size(), 3001u);
    for (std::size_t i = 0; i < odd.size(); ++i) ASSERT_EQ(odd[i], i % 2 == 1) << i;
    auto words = pool.map([](int x) { return std::string(static_cast<std::size_t>(x % 7), 'w'); },
                          iota_vec(500), fed_by(direct, {.chunk_size = 9}));
    for (std::size_t i = 0; i < words.size(); ++i) ASSERT_EQ(words[i], std::string(i % 7, 'w')) << i;
    auto points = pool.map(
        [](int x) {
          return Point{std::to_string(x), {0.5 * x}};
        },
        iota_vec(300), fed_by(direct, {.chunk_size = 11}));
    for (std::size_t i = 0; i < points.size(); ++i) {
      ASSERT_EQ(points[i].name, std::to_string(i));
      ASSERT_EQ(points[i].xs, std::vector<double>{0.5 * static_cast<double>(i)});
    }
  }
}

// The direct path reads the input on the pool's event-loop thread while map() waits; a
// caller that bounds max_tasks_active reads it on its own thread.
TEST(ProcessPool, MapOfARandomAccessInputIsFedByThePoolsEventLoop) {
  ProcessPool pool({.n_jobs = 2});
  for (bool direct : {true, false}) {
    SCOPED_TRACE(path_name(direct));
    std::mutex mutex;
    std::set<std::thread::id> readers;
    auto view = std::views::iota(0, 5000) | std::views::transform([&](int i) {
                  std::lock_guard lock(mutex);
                  readers.insert(std::this_thread::get_id());
                  return i;
                });
    auto out = pool.map(square, view, fed_by(direct, {.chunk_size = 100}));
    ASSERT_EQ(out.size(), 5000u);
    for (int i = 0; i < 5000; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)], i * i);
    ASSERT_EQ(readers.size(), 1u);
    EXPECT_EQ(*readers.begin() == std::this_thread::get_id(), !direct);
  }
}

// An input that throws while it is read ends the map with that exception, on either path.
TEST(ProcessPool, AnInputThatThrowsWhileReadEndsTheMapWithItsException) {
  ProcessPool pool({.n_jobs = 2});
  for (bool direct : {true, false}) {
    SCOPED_TRACE(path_name(direct));
    auto view = std::views::iota(0, 20000) | std::views::transform([](int i) {
                  if (i == 12345) throw std::runtime_error("cannot read element 12345");
                  return i;
                });
    try {
      pool.map(square, view, fed_by(direct, {.chunk_size = 100}));
      FAIL() << "expected the reader's exception";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "cannot read element 12345");
    }
    EXPECT_EQ(pool.map(square, iota_vec(3)), (std::vector<int>{0, 1, 4}));  // the pool goes on
  }
}

// stop() while a direct map runs: what the workers hold finishes, the rest is not started and
// the map throws PoolError instead of returning results it does not have.
TEST(ProcessPool, StoppingThePoolDuringADirectMapIsAPoolError) {
  ProcessPool pool({.n_jobs = 2});
  bool stopped = false;
  auto slow = [](int x) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    return x;
  };
  EXPECT_THROW(pool.map(slow, iota_vec(100000),
                        {.chunk_size = 10,
                         .progress =
                             [&](const Progress& p) {
                               if (!stopped && p.done > 0) {
                                 stopped = true;
                                 pool.stop();
                               }
                             },
                         .progress_interval = std::chrono::milliseconds(1)}),
               PoolError);
  EXPECT_TRUE(stopped);
  EXPECT_TRUE(pool.worker_pids().empty());
  EXPECT_THROW(pool.map(square, iota_vec(3)), UsageError);
}

// The same on the fed path (imap), with every chunk posted before the stop: the chunks the pool
// dropped make the call fail; it never ends early as if the input were shorter.
TEST(ProcessPool, StoppingThePoolDuringAnImapIsAPoolError) {
  ProcessPool pool({.n_jobs = 2});
  bool stopped = false;
  auto slow = [](int x) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    return x;
  };
  std::uint64_t seen = 0;
  EXPECT_THROW(
      {
        auto stream = pool.imap(slow, iota_vec(5000), {.chunk_size = 10, .max_tasks_active = 1000});
        while (auto v = stream.next()) {
          if (++seen == 20 && !stopped) {
            stopped = true;
            pool.stop();
          }
        }
      },
      PoolError);
  EXPECT_TRUE(stopped);
  EXPECT_LT(seen, 5000u);
}

// Several callers share one pool: direct maps take turns with each other and with fed maps.
TEST(ProcessPool, SeveralCallersMapOnOnePoolAtOnce) {
  ProcessPool pool({.n_jobs = 2});
  std::vector<std::uint64_t> in(300000);
  std::iota(in.begin(), in.end(), 0);
  auto f = [](std::uint64_t x) { return 3 * x + 1; };
  std::vector<std::uint64_t> a, b, c;
  std::thread t1([&] { a = pool.map(f, in, {.chunk_size = 1000}); });
  std::thread t2([&] {
    for (std::uint64_t v : pool.imap(f, in, {.chunk_size = 500})) b.push_back(v);
  });
  c = pool.map(f, in);
  t1.join();
  t2.join();
  for (auto* out : {&a, &b, &c}) {
    ASSERT_EQ(out->size(), in.size());
    for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ((*out)[i], 3 * i + 1) << i;
  }
}

TEST(ProcessPool, NonTrivialTypesCrossThroughBoostSerialization) {
  ProcessPool pool({.n_jobs = 2});
  std::vector<Point> in;
  for (int i = 0; i < 100; ++i) in.push_back({"p" + std::to_string(i), {1.0 * i, 2.0 * i}});
  auto out = pool.map(
      [](const Point& p) {
        Point q = p;
        q.name += "!";
        for (double& x : q.xs) x *= 10;
        return q;
      },
      in, {.chunk_size = 7});
  ASSERT_EQ(out.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(out[static_cast<std::size_t>(i)].name, "p" + std::to_string(i) + "!");
    EXPECT_EQ(out[static_cast<std::size_t>(i)].xs, (std::vector<double>{10.0 * i, 20.0 * i}));
  }
}

// raise_first: the map throws the first failure and does not start what it had not started.
// Elements of 2 ms keep what a worker holds at two chunks, so only a few run after the failure.
TEST(ProcessPool, RaiseFirstCancelsTheRestOfTheMap) {
  shared_counter();  // mapped before the fork, or the workers get a private copy
  ProcessPool pool({.n_jobs = 2});
  const int n = 400;
  for (bool direct : {true, false}) {
    SCOPED_TRACE(path_name(direct));
    shared_counter()->store(0);
    try {
      pool.map(
          [](int x) {
            shared_counter()->fetch_add(1);
            if (x == 0) throw std::runtime_error("zero");
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            return x;
          },
          iota_vec(n), fed_by(direct, {.chunk_size = 1}));
      FAIL() << "expected TaskError";
    } catch (const TaskError& e) {
      ASSERT_EQ(e.failures().size(), 1u);
      EXPECT_EQ(e.failures()[0].index, 0u);
      EXPECT_EQ(e.failures()[0].message, "zero");
    }
    EXPECT_GE(shared_counter()->load(), 1);
    EXPECT_LT(shared_counter()->load(), n / 4);
  }
}

// Each replacement is a fresh process, forked by the fork server (the state it resets is
// checked for both pools in pool_map_test.cpp).
TEST(ProcessPool, WorkerLifespanForksAFreshProcess) {
  ProcessPool pool({.n_jobs = 1, .worker_lifespan = 2});
  auto pids =
      pool.map([](Worker& w, int) { return std::make_pair(++w.state<int>(), static_cast<int>(getpid())); },
               iota_vec(20), {.chunk_size = 1});
  std::set<int> distinct;
  for (std::size_t i = 0; i < pids.size(); ++i) {
    EXPECT_EQ(pids[i].first, static_cast<int>(i % 2) + 1) << i;
    distinct.insert(pids[i].second);
  }
  EXPECT_EQ(distinct.size(), 10u);  // a fresh process every two chunks
}

// A result far larger than the rings streams through them in pieces; inputs too.
TEST(ProcessPool, LargeInputsAndResultsStreamThroughSmallRings) {
  ProcessPool pool({.n_jobs = 2, .ring_bytes = 8192});
  std::vector<std::string> in;
  for (int i = 0; i < 6; ++i) in.push_back(std::string(300000 + i, static_cast<char>('a' + i)));
  auto out = pool.map([](const std::string& s) { return s + s; }, in, {.chunk_size = 2});
  ASSERT_EQ(out.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) EXPECT_TRUE(out[i] == in[i] + in[i]) << i;
  // Chunks of tiny elements larger than a ring, on both paths.
  for (bool direct : {true, false}) {
    SCOPED_TRACE(path_name(direct));
    auto squares = pool.map(square, iota_vec(30000), fed_by(direct, {.chunk_size = 5000}));
    ASSERT_EQ(squares.size(), 30000u);
    for (int i = 0; i < 30000; ++i) ASSERT_EQ(squares[static_cast<std::size_t>(i)], i * i) << i;
  }
}

// SIGKILL a random worker 20 times during a 100,000-element map: each death is noticed, the
// lost elements re-run on a fresh worker, and the results are exact. A killer thread kills at
// evenly spaced counts of completed elements (the workers wait for it there).
void kill_twenty_times_during_a_map(bool direct) {
  SCOPED_TRACE(path_name(direct));
  KillGate* g = kill_gate();
  g->completed.store(0);
  g->kills_done.store(0);
  for (auto& s : g->started) s.store(false);
  // A worker may be killed more than once while it runs one element (the killer picks at
  // random); that must not turn the element into a crash failure here.
  ProcessPool pool({.n_jobs = 2, .max_crash_retries = kKills});
  std::set<pid_t> victims;
  std::atomic<bool> over{false};
  std::thread killer([&] {
    std::mt19937 rng(12345);
    for (int k = 1; k <= kKills && !over; ++k) {
      while (!over && g->completed.load() < kill_threshold(k)) std::this_thread::yield();
      pid_t victim = 0;
      while (!over && victim == 0) {
        // A killed worker stays listed until the server reaped it; a replacement may be forking.
        std::vector<pid_t> fresh;
        for (pid_t p : pool.worker_pids())
          if (!victims.count(p)) fresh.push_back(p);
        if (fresh.empty()) {
          std::this_thread::yield();
          continue;
        }
        victim = fresh[std::uniform_int_distribution<std::size_t>(0, fresh.size() - 1)(rng)];
      }
      if (victim == 0) break;
      EXPECT_EQ(kill(victim, SIGKILL), 0);
      EXPECT_TRUE(wait_gone(victim, 30000));
      victims.insert(victim);
      g->kills_done.store(k);
    }
  });
  std::vector<std::pair<int, std::uint64_t>> out;
  try {
    if (direct) {
      out = pool.map(gated_busy, iota_vec(kKillElements), {.chunk_size = 50});
    } else {
      for (auto& v : pool.imap(gated_busy, iota_vec(kKillElements), {.chunk_size = 50})) out.push_back(v);
    }
  } catch (...) {
    over = true;
    killer.join();
    throw;
  }
  over = true;
  killer.join();
  EXPECT_EQ(victims.size(), static_cast<std::size_t>(kKills));
  ASSERT_EQ(out.size(), static_cast<std::size_t>(kKillElements));
  for (int i = 0; i < kKillElements; ++i) {
    std::uint64_t h = static_cast<std::uint64_t>(i);
    for (int k = 0; k < 200; ++k) h = h * 6364136223846793005ull + 1442695040888963407ull;
    ASSERT_EQ(out[static_cast<std::size_t>(i)], std::make_pair(i, h)) << i;
  }
  std::uint64_t restarts = 0;
  for (auto& w : pool.insights().workers) restarts += w.restarts;
  EXPECT_EQ(restarts, static_cast<std::uint64_t>(kKills));
}

TEST(ProcessPool, ARandomWorkerKilledTwentyTimesDoesNotSpoilTheMap) { kill_twenty_times_during_a_map(true); }

TEST(ProcessPool, ARandomWorkerKilledTwentyTimesDoesNotSpoilAnImap) { kill_twenty_times_during_a_map(false); }

TEST(ProcessPool, NoZombieOrWorkerRemainsAfterThePoolIsDestroyed) {
  std::vector<pid_t> pids;
  pid_t server;
  {
    ProcessPool pool({.n_jobs = 3, .worker_lifespan = 1});
    auto seen = pool.map([](int) { return static_cast<pid_t>(getpid()); }, iota_vec(50), {.chunk_size = 1});
    pids.assign(seen.begin(), seen.end());
    server = pool.server_pid();
    EXPECT_EQ(std::set<pid_t>(pids.begin(), pids.end()).size(), 50u);  // one process per chunk
  }
  EXPECT_TRUE(children_of(getpid()).empty());
  EXPECT_FALSE(pid_alive(server));
  for (pid_t p : pids) EXPECT_FALSE(pid_alive(p)) << p;
}

TEST(ProcessPool, WorkersDieWithTheirParent) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t parent = fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    close(fds[0]);
    ProcessPool pool({.n_jobs = 2});
    std::vector<pid_t> pids = pool.worker_pids();
    pids.push_back(pool.server_pid());
    [[maybe_unused]] auto w = write(fds[1], pids.data(), pids.size() * sizeof(pid_t));
    for (;;) pause();
  }
  close(fds[1]);
  std::vector<pid_t> pids(3);
  ASSERT_EQ(read(fds[0], pids.data(), 3 * sizeof(pid_t)), static_cast<ssize_t>(3 * sizeof(pid_t)));
  close(fds[0]);
  for (pid_t p : pids) EXPECT_TRUE(pid_alive(p));
  kill(parent, SIGKILL);
  waitpid(parent, nullptr, 0);
  for (pid_t p : pids) EXPECT_TRUE(wait_gone(p, 30000)) << "process " << p << " outlived its parent";
}

// 1 GiB made before the pool and read whole by 2 workers stays shared: the pool's total
// proportional set size (parent, fork server, workers) stays under 1.5 GiB.
TEST(ProcessPool, AGibibyteSharedObjectIsNotCopied) {
  const std::size_t bytes = std::size_t{1} << 30;
  auto big = std::make_shared<std::vector<unsigned char>>(bytes);
  for (std::size_t i = 0; i < bytes; i += 4096) (*big)[i] = static_cast<unsigned char>(i >> 12);
  std::uint64_t expect = 0;
  for (std::size_t i = 0; i < bytes; i += 4096) expect += (*big)[i];
  ProcessPool pool({.n_jobs = 2,
                    .worker_init =
                        [](Worker& w) {
                          const auto& v = w.shared<std::vector<unsigned char>>();
                          std::uint64_t sum = 0;
                          for (std::size_t i = 0; i < v.size(); i += 64) sum += v[i];
                          w.state<std::uint64_t>() = sum;
                        },
                    .shared_objects = std::shared_ptr<const std::vector<unsigned char>>(big)});
  auto sums = pool.map(
      [](Worker& w, int) {
        const auto& v = w.shared<std::vector<unsigned char>>();
        std::uint64_t sum = 0;
        for (std::size_t i = 0; i < v.size(); i += 4096) sum += v[i];
        return std::make_pair(w.id(), sum);
      },
      iota_vec(8), {.chunk_size = 1});
  for (auto& [id, sum] : sums) EXPECT_EQ(sum, expect);
  long total = pss_kib(getpid()) + pss_kib(pool.server_pid());
  auto workers = pool.worker_pids();
  ASSERT_EQ(workers.size(), 2u);
  for (pid_t p : workers) total += pss_kib(p);
  EXPECT_GT(total, 1L << 20);        // the array is counted once...
  EXPECT_LT(total, (3L << 20) / 2);  // ...and not once per process
}

TEST(ProcessPool, ARunawayTaskIsKilledAndReportedAsTimedOut) {
  shared_counter();  // mapped before the fork: the runaway spins on it
  ProcessPool pool({.n_jobs = 2, .task_timeout = std::chrono::milliseconds(300)});
  auto task = [](int x) {
    if (x == 3) {
      for (;;) shared_counter()->fetch_add(0);
    }
    return x * 2;
  };
  for (bool direct : {true, false}) {
    SCOPED_TRACE(path_name(direct));
    try {
      pool.map(task, iota_vec(40), fed_by(direct, {.chunk_size = 4, .on_error = OnError::report_all}));
      FAIL() << "expected TaskError";
    } catch (const TaskError& e) {
      ASSERT_EQ(e.failures().size(), 1u);
      EXPECT_EQ(e.failures()[0].index, 3u);
      EXPECT_EQ(e.failures()[0].kind, FailureKind::timeout);
      EXPECT_NE(e.failures()[0].message.find("task_timeout"), std::string::npos);
    }
    EXPECT_EQ(pool.map(square, iota_vec(5)), (std::vector<int>{0, 1, 4, 9, 16}));  // the map goes on
  }
}

TEST(ProcessPool, AnElementThatKeepsCrashingItsWorkerIsReportedAfterRetries) {
  ProcessPool pool({.n_jobs = 2, .max_crash_retries = 1});
  auto task = [](int x) {
    if (x == 5) raise(SIGKILL);
    return x;
  };
  for (bool direct : {true, false}) {
    SCOPED_TRACE(path_name(direct));
    try {
      pool.map(task, iota_vec(20), fed_by(direct, {.chunk_size = 3, .on_error = OnError::report_all}));
      FAIL() << "expected TaskError";
    } catch (const TaskError& e) {
      ASSERT_EQ(e.failures().size(), 1u);
      EXPECT_EQ(e.failures()[0].index, 5u);
      EXPECT_EQ(e.failures()[0].kind, FailureKind::crash);
      EXPECT_NE(e.failures()[0].message.find("signal 9"), std::string::npos) << e.failures()[0].message;
    }
  }
}

TEST(ProcessPool, ATaskCanOpenANestedProcessPool) {
  ProcessPool outer({.n_jobs = 2});
  auto sums = outer.map(
      [](int x) {
        ProcessPool inner({.n_jobs = 2});
        auto v = inner.map([](int y) { return y * y; }, iota_vec(x + 1));
        ThreadPool threads({.n_jobs = 2});
        auto t = threads.map([](int y) { return y; }, v);
        return std::accumulate(t.begin(), t.end(), 0);
      },
      iota_vec(4), {.chunk_size = 1});
  EXPECT_EQ(sums, (std::vector<int>{0, 1, 5, 14}));
}

// Progress of a direct map comes from the caller's thread, while the event loop runs the map.
TEST(ProcessPool, ProgressOfALongMapIsReportedWhileItRuns) {
  ProcessPool pool({.n_jobs = 2});
  std::vector<Progress> seen;
  auto out = pool.map(
      [](int x) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        return x;
      },
      iota_vec(2000),
      {.chunk_size = 10,
       .progress = [&](const Progress& p) { seen.push_back(p); },
       .progress_interval = std::chrono::milliseconds(10)});
  EXPECT_EQ(out, iota_vec(2000));
  ASSERT_GE(seen.size(), 3u);
  EXPECT_TRUE(seen.back().finished);
  bool some_midway = false;
  for (const Progress& p : seen) some_midway = some_midway || (p.done > 0 && p.done < 2000 && !p.finished);
  EXPECT_TRUE(some_midway);
}

}  // namespace
}  // namespace mpmux
