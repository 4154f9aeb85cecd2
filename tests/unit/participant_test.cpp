// Runs and Multiplexer loops without MPI are participants of their session: several loops in
// threads or in forked processes share one session, each element going to one of them, and
// none of them ever starts MPI.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "mpmux/multiplexer.hpp"
#include "test_support.hpp"

namespace mpmux::test {
namespace {

bool mpi_initialized() {
  int flag = 0;
  MPI_Initialized(&flag);
  return flag != 0;
}

std::string new_session(const std::filesystem::path& root, int n) {
  std::vector<int> values(static_cast<std::size_t>(n));
  std::iota(values.begin(), values.end(), 0);
  return Multiplexer<int>::create(values, root).create_read_session();
}

TEST(Participant, MultiplexerLoopsInThreadsShareOneSessionAndDoEachElementOnceWithoutMpi) {
  TempDir dir;
  const int n = 3000;
  const std::string id = new_session(dir.path(), n);
  std::vector<std::atomic<int>> seen(n);
  std::vector<std::uint64_t> per_thread(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Multiplexer<int> work(id);
      for (auto& e : work) {
        ++seen[static_cast<std::size_t>(e.value())];
        e.set_result(std::to_string(e.value() * 2));
        ++per_thread[static_cast<std::size_t>(t)];
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < n; ++i) ASSERT_EQ(seen[static_cast<std::size_t>(i)], 1) << "element " << i;
  EXPECT_EQ(std::accumulate(per_thread.begin(), per_thread.end(), std::uint64_t{0}), std::uint64_t(n));
  Multiplexer<int> mux(id);
  EXPECT_TRUE(mux.done());
  const auto rows = mux.results();
  ASSERT_EQ(rows.size(), std::size_t(n));
  for (const auto& r : rows) EXPECT_EQ(r.attempts, 1u) << "element " << r.index;
  EXPECT_FALSE(mpi_initialized()) << "a loop without a communicator started MPI";
}

// The loop stamps each outcome with when its element was handed out and when it was recorded
// (Run::record fills both from its own clock reads): within the loop's span, in order, and apart
// by at least what the body took.
TEST(Participant, EachOutcomeSpansTheBodyThatRanItOnTheWallClock) {
  TempDir dir;
  const std::string id = new_session(dir.path(), 6);
  const auto wall_ns = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  const std::int64_t before = wall_ns();
  {
    Multiplexer<int> mux(id);
    for (auto& e : mux) {
      if (e.value() >= 3) break;  // the other half through for_each
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  Multiplexer<int> rest(id);
  rest.for_each([](auto&) { std::this_thread::sleep_for(std::chrono::milliseconds(20)); });
  const std::int64_t after = wall_ns();
  const auto rows = rest.results();
  ASSERT_EQ(rows.size(), 6u);
  for (const auto& r : rows) {
    ASSERT_TRUE(r.outcome) << "element " << r.index;
    EXPECT_GE(r.outcome->t_start, before) << "element " << r.index;
    EXPECT_LE(r.outcome->t_end, after) << "element " << r.index;
    EXPECT_GE(r.outcome->t_end - r.outcome->t_start, 20'000'000) << "element " << r.index;
  }
}

TEST(Participant, MultiplexerLoopsInForkedProcessesShareOneSession) {
  TempDir dir;
  const int n = 2000;
  const std::string id = new_session(dir.path(), n);
  std::vector<pid_t> children;
  for (int c = 0; c < 3; ++c) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 0;
      try {
        std::ofstream log(dir.path() / ("child" + std::to_string(c) + ".log"));
        Multiplexer<int> work(id);
        for (auto& e : work) log << e.value() << "\n";
        if (mpi_initialized()) code = 3;
      } catch (...) {
        code = 2;
      }
      ::_exit(code);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  std::vector<int> seen(n);
  for (int c = 0; c < 3; ++c) {
    std::ifstream log(dir.path() / ("child" + std::to_string(c) + ".log"));
    for (int v; log >> v;) ++seen[static_cast<std::size_t>(v)];
  }
  for (int i = 0; i < n; ++i) ASSERT_EQ(seen[static_cast<std::size_t>(i)], 1) << "element " << i;
  EXPECT_TRUE(Multiplexer<int>(id).done());
}

TEST(Participant, AStringNamesAMuxDirectoryUnlessItIsAMuxId) {
  TempDir dir;
  const std::string id = new_session(dir.path(), 10);
  const std::string mux_dir = MuxId::parse(id).dir.string();
  Multiplexer<int> handle(mux_dir);
  EXPECT_EQ(handle.dir(), MuxId::parse(id).dir);
  EXPECT_THROW(handle.stat(), UsageError) << "a mux directory has no session";
  EXPECT_NE(handle.create_read_session(), id);
  Multiplexer<int> session(id);
  EXPECT_EQ(session.dir(), MuxId::parse(id).dir);
  EXPECT_EQ(session.stat().total, 10u);
}

TEST(Participant, ARunWithoutACommunicatorRetriesAndRecordsWithoutStartingMpi) {
  TempDir dir;
  const std::string id = new_session(dir.path(), 50);
  RunOptions options;
  options.retries = 1;
  mpmux::Run run(MuxId::parse(id), MPI_COMM_NULL, options);
  EXPECT_TRUE(run.works());
  EXPECT_TRUE(run.is_root());
  WorkItem item;
  std::vector<int> attempts(50);
  while (run.next(item)) {
    ++attempts[item.index];
    Outcome outcome;
    // Every odd element fails its first try and succeeds on the retry pass.
    outcome.type = (item.index % 2 == 1 && item.attempt == 1) ? RecordType::failed : RecordType::done;
    run.record(outcome);
  }
  const RunSummary summary = run.finish();
  for (int i = 0; i < 50; ++i) EXPECT_EQ(attempts[static_cast<std::size_t>(i)], i % 2 == 1 ? 2 : 1) << i;
  EXPECT_EQ(summary.done, 50u);
  EXPECT_EQ(summary.failed, 25u);
  EXPECT_EQ(summary.failed_for_good, 0u);
  EXPECT_FALSE(mpi_initialized());
  EXPECT_TRUE(Multiplexer<int>(id).done());
}

}  // namespace
}  // namespace mpmux::test
