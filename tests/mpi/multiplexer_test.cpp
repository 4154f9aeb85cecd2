// The C++ API under mpiexec: every element of a set is yielded to exactly one rank.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <stdexcept>
#include <boost/serialization/string.hpp>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "mpmux/journal.hpp"
#include "mpmux/multiplexer.hpp"

#include "mpi_test_support.hpp"

namespace {

using mpitest::bcast_string;
using mpitest::rank_of;

struct Params {
  double alpha = 0;
  int seed = 0;
  std::string name;
  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar & alpha & seed & name;
  }
};

Params params_of(std::uint64_t i) {
  return Params{0.5 * static_cast<double>(i), static_cast<int>(i) * 7, "p" + std::to_string(i)};
}

// A temporary root directory made by rank 0 of `comm` and removed at the end.
class TempRoot {
 public:
  explicit TempRoot(MPI_Comm comm) : comm_(comm) {
    std::string path;
    if (rank_of(comm) == 0) {
      char tmpl[] = "/tmp/mpmux-mpi-test-XXXXXX";
      path = ::mkdtemp(tmpl);
    }
    path_ = bcast_string(path, comm);
  }
  ~TempRoot() {
    MPI_Barrier(comm_);
    if (rank_of(comm_) == 0) std::filesystem::remove_all(path_);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  MPI_Comm comm_;
  std::filesystem::path path_;
};

// Creates a set of n Params on rank 0 and a session on it; returns the mux id on every rank.
std::string make_session(const std::filesystem::path& root, std::uint64_t n, MPI_Comm comm) {
  std::string id;
  if (rank_of(comm) == 0) {
    std::vector<Params> data;
    for (std::uint64_t i = 0; i < n; ++i) data.push_back(params_of(i));
    auto mux = mpmux::Multiplexer<Params>::create(data, root, {.tag = "test"});
    id = mux.create_read_session();
  }
  return bcast_string(id, comm);
}

// Iterates the session over `comm`, checking each value, and returns on rank 0 the indices
// every rank got (concatenated).
std::vector<std::uint64_t> yield_all(const std::string& id, MPI_Comm comm, mpmux::RunOptions options = {}) {
  mpmux::Multiplexer<Params> mux(id, comm, options);
  std::vector<std::uint64_t> mine;
  for (auto& e : mux) {
    const Params expected = params_of(e.index());
    EXPECT_EQ(e.value().alpha, expected.alpha);
    EXPECT_EQ(e.value().seed, expected.seed);
    EXPECT_EQ(e.value().name, expected.name);
    e.set_result(std::to_string(e.index() * 2));
    mine.push_back(e.index());
  }
  int size = 0;
  MPI_Comm_size(comm, &size);
  int count = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<std::size_t>(size)), displs(static_cast<std::size_t>(size));
  MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, comm);
  std::partial_sum(counts.begin(), counts.end() - 1, displs.begin() + 1);
  std::vector<std::uint64_t> all(rank_of(comm) == 0 ? static_cast<std::size_t>(displs.back() + counts.back()) : 0);
  MPI_Gatherv(mine.data(), count, MPI_UINT64_T, all.data(), counts.data(), displs.data(), MPI_UINT64_T, 0, comm);
  return all;
}

void expect_exactly_once(std::vector<std::uint64_t> got, std::uint64_t n) {
  ASSERT_EQ(got.size(), n) << "elements yielded in all";
  std::sort(got.begin(), got.end());
  EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end()) << "an element was yielded twice";
  for (std::uint64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], i);
}

TEST(Multiplexer, YieldsEveryElementToExactlyOneRank) {
  TempRoot root(MPI_COMM_WORLD);
  const std::string id = make_session(root.path(), 10000, MPI_COMM_WORLD);
  auto got = yield_all(id, MPI_COMM_WORLD);
  if (rank_of(MPI_COMM_WORLD) == 0) {
    expect_exactly_once(got, 10000);
    mpmux::Multiplexer<Params> mux(id, MPI_COMM_WORLD);
    const auto stat = mux.stat();
    EXPECT_EQ(stat.total, 10000u);
    EXPECT_EQ(stat.done, 10000u);
    EXPECT_EQ(stat.pending, 0u);
    EXPECT_TRUE(mux.done());
    // The journal holds one done record per element, with the result each rank recorded.
    const auto session = mpmux::Session::open(mpmux::MuxId::parse(id));
    const auto state = mpmux::read_session_state(session);
    for (std::uint64_t i = 0; i < 10000; ++i) ASSERT_EQ(state.attempts[i], 1u) << "element " << i;
    // The results read back are those each rank recorded.
    const auto results = mux.results();
    ASSERT_EQ(results.size(), 10000u);
    for (std::uint64_t i = 0; i < 10000; ++i) {
      ASSERT_EQ(results[i].index, i);
      ASSERT_EQ(results[i].status, mpmux::ElementStatus::done);
      ASSERT_TRUE(results[i].outcome.has_value());
      ASSERT_EQ(results[i].outcome->result, std::to_string(i * 2));
    }
  }
}

TEST(Multiplexer, RootWorksWhenAsked) {
  TempRoot root(MPI_COMM_WORLD);
  const std::string id = make_session(root.path(), 10000, MPI_COMM_WORLD);
  mpmux::RunOptions options;
  options.root_works = true;
  options.chunk = {1, 16};
  auto got = yield_all(id, MPI_COMM_WORLD, options);
  if (rank_of(MPI_COMM_WORLD) == 0) expect_exactly_once(got, 10000);
}

TEST(Multiplexer, ASecondRunOfADoneSessionYieldsNothing) {
  TempRoot root(MPI_COMM_WORLD);
  const std::string id = make_session(root.path(), 500, MPI_COMM_WORLD);
  auto first = yield_all(id, MPI_COMM_WORLD);
  auto second = yield_all(id, MPI_COMM_WORLD);
  if (rank_of(MPI_COMM_WORLD) == 0) {
    expect_exactly_once(first, 500);
    EXPECT_TRUE(second.empty());
  }
}

TEST(Multiplexer, ConcurrentSessionsOnOneSetAreIndependent) {
  TempRoot root(MPI_COMM_WORLD);
  // Two sessions on one set, iterated at the same time by the two halves of the job.
  std::string ids[2];
  if (rank_of(MPI_COMM_WORLD) == 0) {
    std::vector<Params> data;
    for (std::uint64_t i = 0; i < 3000; ++i) data.push_back(params_of(i));
    auto mux = mpmux::Multiplexer<Params>::create(data, root.path());
    ids[0] = mux.create_read_session();
    ids[1] = mux.create_read_session();
    EXPECT_NE(ids[0], ids[1]);
  }
  ids[0] = bcast_string(ids[0], MPI_COMM_WORLD);
  ids[1] = bcast_string(ids[1], MPI_COMM_WORLD);
  const int color = rank_of(MPI_COMM_WORLD) % 2;
  MPI_Comm half;
  MPI_Comm_split(MPI_COMM_WORLD, color, 0, &half);
  auto got = yield_all(ids[color], half);
  if (rank_of(half) == 0) expect_exactly_once(got, 3000);
  MPI_Comm_free(&half);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank_of(MPI_COMM_WORLD) == 0) {
    for (const auto& id : ids) {
      const auto state = mpmux::read_session_state(mpmux::Session::open(mpmux::MuxId::parse(id)));
      EXPECT_EQ(state.done, 3000u);
      for (std::uint64_t i = 0; i < 3000; ++i) ASSERT_EQ(state.attempts[i], 1u);
    }
  }
}

TEST(Multiplexer, ForEachRetriesAThrowingTaskUntilItSucceeds) {
  TempRoot root(MPI_COMM_WORLD);
  const std::string id = make_session(root.path(), 2000, MPI_COMM_WORLD);
  mpmux::RunOptions options;
  options.retries = 2;
  mpmux::Multiplexer<Params> mux(id, MPI_COMM_WORLD, options);
  mux.for_each([](auto& e) {
    if (e.index() % 100 == 7 && e.attempt() < 3) throw std::runtime_error("flaky " + std::to_string(e.index()));
    e.set_result(e.value().name);
  });
  if (rank_of(MPI_COMM_WORLD) == 0) {
    const auto state = mpmux::read_session_state(mpmux::Session::open(mpmux::MuxId::parse(id)));
    EXPECT_EQ(state.done, 2000u);
    EXPECT_EQ(state.failed, 0u);
    for (std::uint64_t i = 0; i < 2000; ++i) ASSERT_EQ(state.attempts[i], i % 100 == 7 ? 3u : 1u) << i;
  }
}

TEST(Multiplexer, ForEachRecordsATaskThatKeepsFailingAsFailedForGood) {
  TempRoot root(MPI_COMM_WORLD);
  const std::string id = make_session(root.path(), 1000, MPI_COMM_WORLD);
  mpmux::RunOptions options;
  options.retries = 1;
  mpmux::Multiplexer<Params> mux(id, MPI_COMM_WORLD, options);
  const auto summary = mux.for_each([](auto& e) {
    if (e.index() % 50 == 0) throw std::runtime_error("always fails");
  });
  if (rank_of(MPI_COMM_WORLD) == 0) {
    // The root's summary counts what every rank reported.
    EXPECT_EQ(summary.failed_for_good, 20u);
    EXPECT_EQ(summary.failed, 40u);
    const auto stat = mux.stat();
    EXPECT_EQ(stat.done, 980u);
    EXPECT_EQ(stat.failed, 20u);
    EXPECT_FALSE(mux.done());
    const auto state = mpmux::read_session_state(mpmux::Session::open(mpmux::MuxId::parse(id)));
    for (std::uint64_t i = 0; i < 1000; i += 50) ASSERT_EQ(state.attempts[i], 2u) << i;
  }
}

TEST(Multiplexer, BreakingOutOfTheLoopLeavesTheRestPending) {
  TempRoot root(MPI_COMM_WORLD);
  const std::string id = make_session(root.path(), 3000, MPI_COMM_WORLD);
  {
    mpmux::Multiplexer<Params> mux(id, MPI_COMM_WORLD);
    int seen = 0;
    for (auto& e : mux) {
      (void)e;
      if (++seen == 10) break;
    }
  }
  // The run ended when the Multiplexer went away; a second run hands out only what is left.
  auto rest = yield_all(id, MPI_COMM_WORLD);
  if (rank_of(MPI_COMM_WORLD) == 0) {
    const auto stat = mpmux::Multiplexer<Params>(id, MPI_COMM_WORLD).stat();
    EXPECT_EQ(stat.done, 3000u);
    EXPECT_LT(rest.size(), 3000u);
  }
}

TEST(Multiplexer, AMissingSessionIsAUsageErrorOnEveryRank) {
  TempRoot root(MPI_COMM_WORLD);
  const std::string id = "file://" + root.path().string() + "/nothing-here#s=20260101T000000Z-0000";
  mpmux::Multiplexer<Params> mux(id, MPI_COMM_WORLD);
  EXPECT_THROW(mux.begin(), mpmux::UsageError);
}

}  // namespace
