// The runner under mpiexec: a whole run with one task kind, the same verdict on every rank, and
// a failure on some ranks thrown on all of them with the message of the lowest.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"
#include "mpmux/runner.hpp"
#include "mpmux/session.hpp"

#include "mpi_test_support.hpp"

namespace {

using mpitest::bcast_string;
using mpitest::rank_of;

// A session on a set of n elements {"i": 0} ... {"i": n-1}, made by rank 0 under a temporary
// directory that is removed at the end.
class RangeSession {
 public:
  RangeSession(std::uint64_t n, MPI_Comm comm) : comm_(comm) {
    std::string id;
    if (rank_of(comm) == 0) {
      char tmpl[] = "/tmp/mpmux-runner-test-XXXXXX";
      root_ = ::mkdtemp(tmpl);
      id = mpmux::Session::create(mpmux::create_mux(root_, mpmux::make_range(n), "runner")).id().str();
    }
    id_ = mpmux::MuxId::parse(bcast_string(id, comm));
  }
  ~RangeSession() {
    MPI_Barrier(comm_);
    if (rank_of(comm_) == 0) std::filesystem::remove_all(root_);
  }
  const mpmux::MuxId& id() const { return id_; }
  bool journal_is_empty() const {
    const mpmux::Session session = mpmux::Session::open(id_);
    return std::filesystem::is_empty(session.journal_dir());
  }

 private:
  MPI_Comm comm_;
  std::filesystem::path root_;
  mpmux::MuxId id_;
};

mpmux::RunnerOptions quiet(mpmux::TaskKind task) {
  mpmux::RunnerOptions options;
  options.task = std::move(task);
  options.deadline_from_slurm = false;
  return options;
}

}  // namespace

TEST(Runner, RunsACommandPerElementAndEveryRankReturnsTheSameEnd) {
  RangeSession session(40, MPI_COMM_WORLD);
  for (int procs : {1, 3}) {
    mpmux::Runner runner(session.id(), MPI_COMM_WORLD,
                         quiet(mpmux::CommandTask{.command_template = "test {i} -ne 7", .procs = procs}));
    const mpmux::RunReport report = runner.run();
    // Element 7 fails for good in the first run and again when --rerun-failed is not set: the
    // second run has nothing to hand out, and the session still holds the failure.
    EXPECT_EQ(report.end, mpmux::RunEnd::some_failed) << "procs " << procs;
    if (runner.is_root()) {
      EXPECT_EQ(report.stat.done, 39u);
      EXPECT_EQ(report.stat.failed, 1u);
      EXPECT_TRUE(report.results_h5_error.empty()) << report.results_h5_error;
    }
  }
}

TEST(Runner, APluginInitFailingOnTheWorkingRanksFailsEveryRankWithTheLowestRanksMessage) {
  RangeSession session(5, MPI_COMM_WORLD);
  const std::string plugin = std::string(MPMUX_BINARY_DIR) + "/plugins/tasks/librosenbrock.so";
  const int rank = rank_of(MPI_COMM_WORLD);
  try {
    mpmux::Runner runner(session.id(), MPI_COMM_WORLD,
                         quiet(mpmux::PluginTask{.library = plugin, .arg = "1,x"}));
    ADD_FAILURE() << "a failing init was not thrown";
  } catch (const mpmux::UsageError& e) {
    // Rank 0 only coordinates, so rank 1 is the lowest that failed; it says so everywhere else.
    const std::string what = e.what();
    if (rank != 1)
      EXPECT_EQ(what.rfind("rank 1: --plugin '" + plugin + "': mpmux_task_init returned", 0), 0u) << what;
    if (rank == 1)
      EXPECT_EQ(what.rfind("--plugin '" + plugin + "': mpmux_task_init returned", 0), 0u) << what;
  }
  if (rank == 0) EXPECT_TRUE(session.journal_is_empty()) << "a run that failed to start wrote a journal";
}

TEST(Runner, BadValuesAreUsageErrorsOnEveryRankBeforeAnythingIsStored) {
  RangeSession session(5, MPI_COMM_WORLD);
  auto options = quiet(mpmux::CommandTask{.command_template = "true"});
  options.run.chunk = {4, 2};
  EXPECT_THROW(mpmux::Runner(session.id(), MPI_COMM_WORLD, options), mpmux::UsageError);
  EXPECT_THROW(
      mpmux::Runner(session.id(), MPI_COMM_WORLD, quiet(mpmux::CommandTask{.command_template = "x {"})),
      mpmux::UsageError);
  EXPECT_THROW(
      mpmux::Runner(session.id(), MPI_COMM_WORLD, quiet(mpmux::PluginTask{.library = "/nonexistent/lib.so"})),
      mpmux::UsageError);
  if (rank_of(MPI_COMM_WORLD) == 0) EXPECT_TRUE(session.journal_is_empty());
}
