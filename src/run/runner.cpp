#include "mpmux/runner.hpp"

#include <cstdio>
#include <optional>
#include <utility>

#include "mpmux/error.hpp"
#include "mpmux/mpi.hpp"
#include "mpmux/results.hpp"
#include "run/collective.hpp"
#include "run/command_tasks.hpp"
#include "run/deadline.hpp"
#include "run/plugin_tasks.hpp"
#include "run/worker_tasks.hpp"

namespace mpmux {

struct Runner::State {
  MuxId id;
  MPI_Comm comm = MPI_COMM_NULL;
  RunnerOptions options;
  int rank = 0, size = 1;
  std::optional<CommandTemplate> command;          // CommandTask
  std::unique_ptr<run::PluginTasks> plugin_tasks;  // PluginTask, on the ranks that work
  std::unique_ptr<run::WorkerTasks> worker_tasks;  // WorkerTask, on the ranks that work
  std::unique_ptr<Run> run;

  void check_options() const;
  void take_deadline_from_slurm();
  void start_plugin(const PluginTask& task);
  void start_workers(const WorkerTask& task);
  void process_elements();
  RunEnd decide_end(RunReport& report) const;
};

namespace {

// The option pairings the CLI cannot express wrongly, checked for every caller.
void check_task(const CommandTask& task) {
  if (task.procs < 1 || task.procs > 4096)
    throw UsageError("--procs " + std::to_string(task.procs) + ": must be between 1 and 4096");
  if (task.limits.timeout_s < 0) throw UsageError("--timeout must not be negative");
}

void check_task(const PluginTask& task) {
  if (task.threads < 1 || task.threads > 4096)
    throw UsageError("--threads " + std::to_string(task.threads) + ": must be between 1 and 4096");
}

void check_task(const WorkerTask& task) {
  if (task.argv.empty() || task.argv[0].empty()) throw UsageError("--worker: give the worker program");
  if (task.procs < 1 || task.procs > 4096)
    throw UsageError("--procs " + std::to_string(task.procs) + ": must be between 1 and 4096");
  if (task.timeout_s < 0) throw UsageError("--timeout must not be negative");
  if (!(task.start_timeout_s > 0))
    throw UsageError("--worker-start-timeout " + std::to_string(task.start_timeout_s) + ": must be positive");
}

}  // namespace

void Runner::State::check_options() const {
  const ChunkPolicy& chunk = options.run.chunk;
  if (chunk.min == 0 || chunk.max < chunk.min)
    throw UsageError("run: --chunk-min must be at least 1 and at most --chunk-max");
  std::visit([](const auto& task) { check_task(task); }, options.task);
}

// Under Slurm the job's end is the deadline; asked once, by the root, and shared.
void Runner::State::take_deadline_from_slurm() {
  double end = 0;
  if (rank == options.run.root)
    end = run::slurm_job_end(static_cast<double>(detail::unix_ns()) / 1e9).value_or(0);
  if (comm != MPI_COMM_NULL)
    run::check_mpi(MPI_Bcast(&end, 1, MPI_DOUBLE, options.run.root, comm), "MPI_Bcast", rank);
  if (end > 0) options.run.deadline = end;
}

// Loads the plugin on every rank and starts its threads (running init) on the ranks that take
// elements, before the run creates anything in the session.
void Runner::State::start_plugin(const PluginTask& task) {
  const bool works = Run::rank_works(rank, size, options.run);
  auto start = [&] {
    auto plugin = run::TaskPlugin::open(task.library);
    if (works)
      plugin_tasks = std::make_unique<run::PluginTasks>(std::move(plugin), task.arg, rank, task.threads);
  };
  if (comm == MPI_COMM_NULL)
    start();
  else
    run::all_or_none(comm, start);
}

// Starts the worker programs (each answering INIT) on the ranks that take elements, before the
// run creates anything in the session; a program that cannot start fails every rank.
void Runner::State::start_workers(const WorkerTask& task) {
  const bool works = Run::rank_works(rank, size, options.run);
  auto start = [&] {
    if (works) worker_tasks = std::make_unique<run::WorkerTasks>(task, id.str(), rank);
  };
  if (comm == MPI_COMM_NULL)
    start();
  else
    run::all_or_none(comm, start);
}

void Runner::State::process_elements() {
  if (!std::holds_alternative<CommandTask>(options.task)) {
    run::ConcurrentTasks* tasks =
        plugin_tasks ? static_cast<run::ConcurrentTasks*>(plugin_tasks.get()) : worker_tasks.get();
    if (tasks) {
      run::run_concurrently(*run, *tasks);
      plugin_tasks.reset();  // the plugin's finalize in each thread
      worker_tasks.reset();  // BYE to each worker program
    } else {
      WorkItem none;  // a root that takes no elements coordinates inside next() until the end
      if (run->next(none)) throw Error("run: an element was handed to a rank without task threads");
    }
    return;
  }
  const auto& task = std::get<CommandTask>(options.task);
  if (task.procs > 1) {
    run::CommandTasks tasks(*command, task.limits, task.procs);
    run::run_concurrently(*run, tasks);
  } else {
    run::run_commands_in_turn(*run, *command, task.limits);
  }
}

// On the root, after the run: results.h5 follows every run (rebuilt from the journals into a
// temporary file, then renamed), and the session's counts decide how the run ended.
RunEnd Runner::State::decide_end(RunReport& report) const {
  const Session session = Session::open(id);
  if (!report.summary.journal_failed) {  // with the disk full, leave the last results.h5 alone
    try {
      write_results_h5(session);
    } catch (const Error& e) {
      report.results_h5_error = e.what();
    }
  }
  report.stat = session_stat(session);
  return run_end(report.summary, report.stat.total, report.stat.done, report.stat.failed);
}

RunEnd run_end(const RunSummary& summary, std::uint64_t total, std::uint64_t done, std::uint64_t failed) {
  if (summary.stopped && done + failed < total) return RunEnd::stopped;
  return failed > 0 ? RunEnd::some_failed : RunEnd::all_done;
}

Runner::Runner(const MuxId& id, MPI_Comm comm, RunnerOptions options) : state_(std::make_unique<State>()) {
  auto& s = *state_;
  s.id = id;
  s.comm = comm;
  s.options = std::move(options);
  s.check_options();
  if (const auto* task = std::get_if<CommandTask>(&s.options.task)) {
    s.command = CommandTemplate::parse(task->command_template, task->shell);
    // The root checks the template against the set's fields before anything is handed out.
    auto user_check = std::move(s.options.run.validate);
    s.options.run.validate = [&command = *s.command, user_check](const ElementSetInfo& info,
                                                                 std::string_view first) {
      command.check_fields(run::element_fields(info, first));
      if (user_check) user_check(info, first);
    };
  }
  if (comm != MPI_COMM_NULL) {  // without a communicator: one process, no MPI at all
    ensure_mpi();
    run::check_mpi(MPI_Comm_rank(comm, &s.rank), "MPI_Comm_rank", s.rank);
    run::check_mpi(MPI_Comm_size(comm, &s.size), "MPI_Comm_size", s.rank);
  }
  if (!s.options.run.deadline && s.options.deadline_from_slurm) s.take_deadline_from_slurm();
  if (const auto* task = std::get_if<PluginTask>(&s.options.task)) s.start_plugin(*task);
  if (const auto* task = std::get_if<WorkerTask>(&s.options.task)) s.start_workers(*task);
  s.run = std::make_unique<Run>(id, comm, s.options.run);
}

Runner::~Runner() = default;

bool Runner::is_root() const { return state_->run->is_root(); }
std::vector<WindowPath> Runner::claim_paths() const { return state_->run->claim_paths(); }

RunReport Runner::run() {
  auto& s = *state_;
  RunReport report;
  try {
    s.process_elements();
    report.summary = s.run->finish();
  } catch (const std::exception& e) {
    if (s.comm == MPI_COMM_NULL) throw;
    // Past the start, the ranks are no longer in step: a failure here ends the whole job.
    std::fprintf(stderr, "mpmux: %s\n", e.what());
    MPI_Abort(s.comm, 1);
  }
  int end = 0;
  if (s.run->is_root()) end = static_cast<int>(s.decide_end(report));
  if (s.comm != MPI_COMM_NULL)
    run::check_mpi(MPI_Bcast(&end, 1, MPI_INT, s.options.run.root, s.comm), "MPI_Bcast", s.rank);
  report.end = static_cast<RunEnd>(end);
  return report;
}

}  // namespace mpmux
