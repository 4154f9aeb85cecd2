// A whole run of a session with one kind of task, as `mpmux run` does it: each pending element
// claimed by one rank, given to a command or an in-process plugin task, its outcome journaled;
// drains, the deadline, retries, results.h5 and the verdict. The CLI, a C ABI or a binding call
// this; Run (run.hpp) is the loop underneath, for programs that process elements themselves.
//
//   mpmux::Runner runner(id, MPI_COMM_WORLD, {.task = mpmux::CommandTask{.command_template = "./sim {x}"}});
//   mpmux::RunReport report = runner.run();
#pragma once
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "mpmux/command.hpp"
#include "mpmux/export.hpp"
#include "mpmux/rma_claimer.hpp"
#include "mpmux/run.hpp"
#include "mpmux/session.hpp"

namespace mpmux {

/// `--exec`: a command per element, made from an argv template (CommandTemplate).
struct MPMUX_EXPORT CommandTask {
  std::string command_template;
  bool shell = false;
  CommandLimits limits;
  /// Commands run at once by each working rank (1 to 4096).
  int procs = 1;
};

/// `--plugin`: a task plugin (the C ABI of mpmux/plugin.h) run in-process.
struct MPMUX_EXPORT PluginTask {
  std::string library;  // a path; a name without '/' is a file of the current directory
  std::string arg;      // given to the plugin's init in each thread
  /// Threads of each working rank, each with its own instance of the plugin (1 to 4096).
  int threads = 1;
};

/// `--worker`: a persistent worker program (protocol of mpmux/worker_program.hpp), one process
/// per slot, started once and fed one element after the other.
struct MPMUX_EXPORT WorkerTask {
  /// The program (a path, or a name looked up in PATH) and its arguments.
  std::vector<std::string> argv;
  /// Given to every process in its INIT data, as "init" (docs/guide.md, "Worker programs").
  std::string init;
  /// Processes run at once by each working rank (1 to 4096).
  int procs = 1;
  /// > 0: a worker still on one element after this long is killed (and replaced); a failure.
  double timeout_s = 0;
  /// From starting a process to its answer to INIT.
  double start_timeout_s = 60;
  std::size_t max_result = std::size_t{1} << 20;  // longer results are cut and flagged
  std::size_t output_tail = 4096;                 // the last bytes of its output kept per attempt
};

/// What each element is handed to.
using TaskKind = std::variant<CommandTask, PluginTask, WorkerTask>;

struct MPMUX_EXPORT RunnerOptions {
  TaskKind task;
  /// Claiming, retries, signals, grace, deadline, progress, journal (run.hpp).
  RunOptions run;
  /// With no run.deadline: the end of the Slurm job of this process, when it has one.
  bool deadline_from_slurm = true;
};

/// How a run ended; the same on every rank.
enum class RunEnd {
  all_done,     // every element handed out was recorded, none failed for good
  some_failed,  // some element of the session is failed for good
  stopped,      // stopped (signal, deadline, journal write error) with elements left pending
};

/// How a run ended, from its summary and the session's counts after it: stopped when it stopped
/// with elements neither done nor failed for good, else some_failed when any is failed for good.
MPMUX_EXPORT RunEnd run_end(const RunSummary& summary, std::uint64_t total, std::uint64_t done,
                            std::uint64_t failed);

struct MPMUX_EXPORT RunReport {
  RunEnd end = RunEnd::all_done;
  RunSummary summary;  // as this rank saw it (the root sees the whole run)
  /// Root only: the session's counts after the run, and why results.h5 was not rebuilt from the
  /// journals (empty when it was, or when the journal failed and the old file was left alone).
  Stat stat;
  std::string results_h5_error;
};

/// A run of one session over a communicator, with one task kind. Construction and run() are
/// collective. With MPI_COMM_NULL the runner is one process that makes no MPI call (an error
/// past the start is then thrown, not an MPI_Abort).
class MPMUX_EXPORT Runner {
 public:
  /// Checks the options (UsageError naming the option and value), loads the plugin on every
  /// rank and starts its threads (each running the plugin's init) on the ranks that take
  /// elements, then opens the run (Run). A failure on any rank is thrown on every rank, with the
  /// message of the lowest rank that failed, before anything stored is changed.
  Runner(const MuxId& id, MPI_Comm comm, RunnerOptions options);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  bool is_root() const;
  /// How the claimer serves each window (Run::claim_paths); empty for a run of one rank.
  std::vector<WindowPath> claim_paths() const;

  /// Processes this rank's elements until none is left or the run stops, then ends the run: the
  /// root rebuilds results.h5 from the journals (unless the journal failed) and decides how the
  /// run ended, which every rank returns. Past the start the ranks are no longer in step, so an
  /// error there is printed ("mpmux: <what>") and ends the job with MPI_Abort(comm, 1).
  RunReport run();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mpmux
