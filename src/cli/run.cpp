// `mpmux run`: the options of a run, turned into the runner's options; the runner does the rest.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.hpp"
#include "mpmux/error.hpp"
#include "mpmux/runner.hpp"
#include "run/deadline.hpp"
#include "run/signals.hpp"
#include "run/srun_tasks.hpp"

namespace mpmux::cli {

namespace {

struct RunArgs {
  std::string mux_id;
  std::string exec;
  bool shell = false;
  std::uint64_t chunk_min = 1;
  std::uint64_t chunk_max = 1024;
  bool no_progress = false;
  std::string progress;  // --progress, else MPMUX_PROGRESS, else auto
  double progress_interval = 10.0;
  bool root_works = false;
  bool rerun_failed = false;
  int retries = 0;
  double timeout = 0;
  double grace = 60;
  std::string deadline;
  double estimate = -1;
  int procs = 1;
  bool procs_given = false;
  std::string plugin;
  std::string plugin_arg;
  bool plugin_arg_given = false;
  int threads = 1;
  bool threads_given = false;
  bool allow_foreign_owner = false;
  double lease = 30;
};

// Started by mpirun, mpiexec or srun with an MPI plugin: the launcher leaves its mark in the
// environment. Without one, the run is a plain process that never starts MPI.
bool under_mpi_launcher() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MV2_COMM_WORLD_SIZE",
                          "MPI_LOCALNRANKS"})
    if (const char* v = std::getenv(var); v && *v) return true;
  return false;
}

// --progress, else MPMUX_PROGRESS, else auto; the error names where a bad value came from.
ProgressOutput progress_output(const RunArgs& args, bool& progress) {
  const char* env = std::getenv("MPMUX_PROGRESS");
  const bool given = !args.progress.empty();
  const std::string value = given ? args.progress : env && *env ? env : "auto";
  progress = !args.no_progress && value != "none";
  if (value == "auto" || value == "none") return ProgressOutput::automatic;
  if (value == "bar") return ProgressOutput::bar;
  if (value == "lines") return ProgressOutput::lines;
  throw UsageError(std::string(given ? "--progress" : "MPMUX_PROGRESS") + " '" + value +
                   "': give auto, bar, lines or none");
}

// One task kind, and only the options that go with it.
void check_task_options(const RunArgs& args) {
  const bool exec = !args.exec.empty(), plugin = !args.plugin.empty();
  if (exec && plugin)
    throw UsageError("run: give one task kind, --exec TEMPLATE or --plugin LIB.so, not both");
  if (!exec && !plugin) throw UsageError("run: --exec TEMPLATE or --plugin LIB.so is required");
  if (exec && args.threads_given)
    throw UsageError("--threads sets the in-process tasks of --plugin; for --exec commands use --procs");
  if (exec && args.plugin_arg_given) throw UsageError("--plugin-arg goes with --plugin, not --exec");
  if (plugin && args.procs_given)
    throw UsageError("--procs sets the commands of --exec; for --plugin tasks use --threads");
  if (plugin && args.shell) throw UsageError("--shell goes with --exec, not --plugin");
  if (plugin && args.timeout > 0)
    throw UsageError("--timeout needs --exec: an in-process --plugin task cannot be killed");
}

RunnerOptions runner_options(const RunArgs& args) {
  RunnerOptions options;
  if (!args.plugin.empty()) {
    options.task = PluginTask{.library = args.plugin, .arg = args.plugin_arg, .threads = args.threads};
  } else {
    options.task = CommandTask{.command_template = args.exec,
                               .shell = args.shell,
                               .limits = CommandLimits{.timeout_s = args.timeout},
                               .procs = args.procs};
  }
  RunOptions& run = options.run;
  run.chunk = {args.chunk_min, args.chunk_max};
  run.progress_output = progress_output(args, run.progress);
  run.progress_interval_s = args.progress_interval;
  run.root_works = args.root_works;
  run.rerun_failed = args.rerun_failed;
  run.retries = args.retries;
  run.stop_on_signals = true;
  run.grace_s = args.grace;
  run.lease_s = args.lease;
  if (!args.deadline.empty())
    run.deadline = run::parse_deadline(args.deadline, static_cast<double>(detail::unix_ns()) / 1e9);
  if (args.estimate >= 0) run.estimate_s = args.estimate;
  return options;
}

int cmd_run(const RunArgs& args) {
  run::install_stop_handlers();  // before MPI starts: a drain signal must never kill a rank
  check_task_options(args);
  const bool mpi = under_mpi_launcher();
  run::check_srun_tasks(mpi);
  const MuxId id = session_id(args.mux_id, "run");
  check_owner(id.dir, args.allow_foreign_owner);
  check_owner(id.dir / "sessions" / id.session, args.allow_foreign_owner);
  RunnerOptions options = runner_options(args);
  const bool progress = options.run.progress;
  Runner runner(id, mpi ? MPI_COMM_WORLD : MPI_COMM_NULL, std::move(options));
  if (runner.is_root() && progress && !runner.claim_paths().empty()) {
    // Once, at the start: which way each window of the claimer went, and why when it fell back.
    std::vector<std::pair<std::string, std::string>> paths;
    std::string why;
    for (const WindowPath& p : runner.claim_paths()) {
      paths.emplace_back(p.window, p.path);
      if (p.path == "two-sided" && why.empty()) why = " (" + p.detail + ")";
    }
    std::fprintf(stderr, "mpmux: claim paths: %s%s\n", claim_paths_text(paths).c_str(), why.c_str());
  }
  const RunReport report = runner.run();
  if (!report.results_h5_error.empty()) say_error("results.h5 not updated: " + report.results_h5_error);
  if (runner.is_root() && report.summary.fenced_batches > 0)
    std::fprintf(
        stderr,
        "mpmux: %llu batches of this run were taken over while it was silent past its lease (--lease) "
        "and committed by another run first: its records of them are not the ones kept\n",
        static_cast<unsigned long long>(report.summary.fenced_batches));
  if (runner.is_root() && report.summary.held_by_others > 0)
    std::fprintf(stderr,
                 "mpmux: %llu elements are still held by other live runs of the session, which finish them\n",
                 static_cast<unsigned long long>(report.summary.held_by_others));
  // A participant's progress counts its own elements: say where the session stands when other
  // runs took part, so that "190/380 elements (50.0%)" is not read as half a sweep left behind.
  const RunSummary& summary = report.summary;
  if (runner.is_root() && progress && report.end != RunEnd::stopped &&
      summary.done + summary.failed_for_good < summary.handed_out)
    std::fprintf(stderr, "mpmux: the session: %llu of %llu elements done, %llu of them by this run\n",
                 static_cast<unsigned long long>(report.stat.done),
                 static_cast<unsigned long long>(report.stat.total),
                 static_cast<unsigned long long>(summary.done));
  switch (report.end) {
    case RunEnd::all_done:
      return kExitOk;
    case RunEnd::some_failed:
      return kExitFailed;
    case RunEnd::stopped:
      if (runner.is_root()) {
        std::fprintf(stderr,
                     "mpmux: stopped (%s): %llu of %llu elements done, the rest stays pending; "
                     "run the same command again to resume\n",
                     report.summary.stop_reason.c_str(), static_cast<unsigned long long>(report.stat.done),
                     static_cast<unsigned long long>(report.stat.total));
      }
      return kExitStopped;
  }
  return kExitFailed;
}

}  // namespace

Command add_run_command(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand("run", "Process the session's pending elements (under mpirun or srun)");
  add_mux_id(*cmd, args->mux_id);
  cmd->add_option("--exec", args->exec, "Command template: {field}, {#} (index), {{ and }}");
  cmd->add_option("--plugin", args->plugin,
                  "Task plugin LIB.so (C ABI of mpmux/plugin.h), run in-process by --threads threads");
  auto* plugin_arg_opt =
      cmd->add_option("--plugin-arg", args->plugin_arg, "Text given to the plugin's init in each thread");
  cmd->add_flag("--shell", args->shell, "Run the command with /bin/sh -c (values are quoted)");
  cmd->add_option("--chunk-min", args->chunk_min, "Smallest guided chunk")->capture_default_str();
  cmd->add_option("--chunk-max", args->chunk_max, "Largest guided chunk")->capture_default_str();
  cmd->add_option("--progress", args->progress,
                  "auto (default, or MPMUX_PROGRESS): a bar where the user's terminal is, also "
                  "through mpirun or srun; plain lines in batch output")
      ->type_name("auto|bar|lines|none");
  cmd->add_flag("--no-progress", args->no_progress,
                "No progress output: --progress none, whatever else says");
  cmd->add_option("--progress-interval", args->progress_interval, "Seconds between progress lines")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--root-works", args->root_works, "Rank 0 processes elements too");
  cmd->add_flag("--rerun-failed", args->rerun_failed, "Also hand out elements that failed for good");
  cmd->add_option("--retries", args->retries, "Retry a failed element up to N times, on any rank")
      ->capture_default_str()
      ->check(CLI::Range(0, 254));
  cmd->add_option("--timeout", args->timeout, "Kill a task (its process group) after SECONDS; a failure")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--grace", args->grace,
                  "On SIGUSR1/SIGTERM or at the deadline: SECONDS for running tasks to finish")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--deadline", args->deadline,
                  "End time: ISO (2026-11-22T02:10:00) or +DURATION (+2h); default: the Slurm job's end");
  auto* procs_opt =
      cmd->add_option("--procs", args->procs,
                      "Commands run at once by each rank (start one rank per node and give its cores)")
          ->capture_default_str()
          ->check(CLI::Range(1, 4096));
  auto* threads_opt =
      cmd->add_option("--threads", args->threads,
                      "Threads running --plugin tasks in each rank, each with its own plugin state")
          ->capture_default_str()
          ->check(CLI::Range(1, 4096));
  cmd->add_option("--estimate", args->estimate, "Runtime estimate in SECONDS before any element finished")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--lease", args->lease,
                  "SECONDS without a heartbeat after which other runs of the session take over this run's "
                  "batches (heartbeat every lease/4)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 86400.0));
  add_allow_foreign_owner(*cmd, args->allow_foreign_owner);

  return {cmd, [args, plugin_arg_opt, procs_opt, threads_opt] {
            args->procs_given = procs_opt->count() > 0;
            args->threads_given = threads_opt->count() > 0;
            args->plugin_arg_given = plugin_arg_opt->count() > 0;
            return cmd_run(*args);
          }};
}

}  // namespace mpmux::cli
