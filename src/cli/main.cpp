// The mpmux command: new, session, run, stat, done, destroy.
// Exit codes: 0 all done; 1 some elements failed for good (or not done, for `done`);
// 2 bad usage or input; 75 stopped, resumable.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "claim/window.hpp"
#include "cli/tasks.hpp"
#include "mpmux/command.hpp"
#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"
#include "mpmux/mpi.hpp"
#include "mpmux/results.hpp"
#include "mpmux/run.hpp"
#include "mpmux/session.hpp"
#include "run/deadline.hpp"
#include "run/plugin.hpp"
#include "run/signals.hpp"
#include "store/h5_input.hpp"
#include "store/object_store.hpp"

namespace {

using namespace mpmux;
using namespace mpmux::cli;

// The rank the launcher gave this process, read before MPI starts, so that an error found
// while parsing is printed once and not by every rank.
int launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* v = std::getenv(name)) return static_cast<int>(std::strtol(v, nullptr, 10));
  }
  return 0;
}

// MPI_COMM_WORLD aborts on errors unless a library changed its handler; checked all the same.
void check_mpi(int rc, const char* call) {
  if (rc != MPI_SUCCESS) throw Error(std::string(call) + " failed: " + claim::mpi_error_text(rc));
}

}  // namespace

void mpmux::cli::say_error(const std::string& message) {
  if (launcher_rank() == 0) std::fprintf(stderr, "mpmux: %s\n", message.c_str());
}

namespace {

// A mux directory, a file:// URL of one or a mux id; any other scheme is refused, never taken as
// a relative directory.
std::filesystem::path mux_dir_of(const std::string& arg) {
  if (arg.find('#') != std::string::npos && !store::url_scheme(arg).empty()) return MuxId::parse(arg).dir;
  return std::filesystem::absolute(store::local_path_of(arg, "MUX_DIR"));
}

int cmd_new(const std::string& root_arg, const std::string& from, const std::string& format,
            const std::string& encoding_name, const std::vector<std::string>& grid, std::uint64_t range,
            bool range_given, const std::string& tag) {
  const std::filesystem::path root = store::local_path_of(root_arg, "ROOT");
  const int sources = !from.empty() + !grid.empty() + range_given;
  if (sources != 1) throw UsageError("new: give exactly one of --from FILE, --grid SPEC..., --range N");
  const TextEncoding encoding = text_encoding_from_string(encoding_name);
  if (from.empty() && encoding != TextEncoding::utf8)
    throw UsageError("--encoding '" + encoding_name + "': only a --from file has an encoding");
  ParsedElements parsed;
  if (!from.empty() && format.empty() && h5_dataset_of(from)) {
    if (encoding != TextEncoding::utf8)
      throw UsageError("--encoding '" + encoding_name + "': an HDF5 dataset's strings are UTF-8 already");
    parsed = read_h5(*h5_dataset_of(from));
  } else if (!from.empty()) {
    std::string kind = format;
    if (kind.empty()) {
      const auto ext = std::filesystem::path(from).extension().string();
      if (ext == ".csv")
        kind = "csv";
      else if (ext == ".jsonl" || ext == ".ndjson")
        kind = "jsonl";
      else
        throw UsageError("--from '" + from +
                         "': cannot tell the format from the name; give --format csv|jsonl");
    }
    parsed = kind == "csv" ? read_csv(from, encoding) : read_jsonl(from, encoding);
  } else if (!grid.empty()) {
    parsed = make_grid(grid);
  } else {
    parsed = make_range(range);
  }
  std::cout << create_mux(root, parsed, tag).string() << '\n';
  return 0;
}

int cmd_done(const std::string& mux_id) {
  const Stat st = session_stat(Session::open(MuxId::parse(mux_id)));
  std::printf("%llu of %llu elements done\n", static_cast<unsigned long long>(st.done),
              static_cast<unsigned long long>(st.total));
  return st.done == st.total ? 0 : kExitFailed;
}

struct RunArgs {
  std::string mux_id;
  std::string exec;
  bool shell = false;
  std::uint64_t chunk_min = 1;
  std::uint64_t chunk_max = 1024;
  bool no_progress = false;
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
};

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

// Loads the plugin on every rank and starts its threads (running init) on the ranks that
// process elements, before the run creates anything in the session. A failure on any rank ends
// the command on all of them, with the message of the lowest failing rank.
std::unique_ptr<PluginTasks> start_plugin(const RunArgs& args, bool root_works) {
  int rank = 0, size = 1;
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size");
  const bool works = size == 1 || rank != 0 || root_works;  // as Run decides, with root 0
  std::unique_ptr<PluginTasks> tasks;
  int kind = 0;  // 1: usage error, 2: another error
  std::string message;
  try {
    auto plugin = run::TaskPlugin::open(args.plugin);
    if (works) tasks = std::make_unique<PluginTasks>(std::move(plugin), args.plugin_arg, rank, args.threads);
  } catch (const UsageError& e) {
    kind = 1;
    message = e.what();
  } catch (const std::exception& e) {
    kind = 2;
    message = e.what();
  }
  int first = kind != 0 ? rank : size;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce");
  if (first == size) return tasks;
  tasks.reset();
  int length = static_cast<int>(message.size());
  check_mpi(MPI_Bcast(&kind, 1, MPI_INT, first, MPI_COMM_WORLD), "MPI_Bcast");
  check_mpi(MPI_Bcast(&length, 1, MPI_INT, first, MPI_COMM_WORLD), "MPI_Bcast");
  message.resize(static_cast<std::size_t>(length));
  check_mpi(MPI_Bcast(message.data(), length, MPI_CHAR, first, MPI_COMM_WORLD), "MPI_Bcast");
  if (first != 0) message = "rank " + std::to_string(first) + ": " + message;
  if (kind == 1) throw UsageError(message);
  throw Error(message);
}

// The fields an --exec template may use: the table's columns, else the first element's keys.
std::vector<std::string> element_fields(const ElementSetInfo& info, std::string_view first) {
  if (!info.columns.empty()) return info.columns;
  std::vector<std::string> fields;
  if (info.encoding != Encoding::json) return fields;
  const auto j = nlohmann::json::parse(first, nullptr, false);
  if (j.is_object())
    for (const auto& item : j.items()) fields.push_back(item.key());
  return fields;
}

void process(Run& run, const CommandTemplate& command, const CommandLimits& limits) {
  WorkItem item;
  const auto cancel = [&run] { return run.must_cancel(); };
  while (run.next(item)) {
    Outcome outcome;
    try {
      // false: killed by a drain; the attempt is void and the element stays pending.
      if (!run_command(command.render(item.index, item.bytes), outcome, limits, cancel)) continue;
      if (killed_by_drain(run, outcome)) continue;
    } catch (const UsageError& e) {
      outcome = template_failure(e);
    }
    run.record(outcome);
  }
}

int cmd_run(const RunArgs& args) {
  run::install_stop_handlers();  // before MPI starts: a drain signal must never kill a rank
  check_task_options(args);
  if (args.chunk_min == 0 || args.chunk_max < args.chunk_min)
    throw UsageError("run: --chunk-min must be at least 1 and at most --chunk-max");
  if (args.timeout < 0) throw UsageError("--timeout must not be negative");
  std::optional<CommandTemplate> command;
  if (!args.exec.empty()) command = CommandTemplate::parse(args.exec, args.shell);
  const MuxId id = MuxId::parse(args.mux_id);
  check_owner(id.dir, args.allow_foreign_owner);
  check_owner(id.dir / "sessions" / id.session, args.allow_foreign_owner);
  const double now = static_cast<double>(detail::unix_ns()) / 1e9;
  std::optional<double> deadline;
  if (!args.deadline.empty()) deadline = run::parse_deadline(args.deadline, now);
  ensure_mpi();
  if (args.deadline.empty()) {
    // Under Slurm the job's end is the deadline; asked once, by rank 0, and shared.
    int rank = 0;
    check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
    double end = 0;
    if (rank == 0) end = run::slurm_job_end(now).value_or(0);
    check_mpi(MPI_Bcast(&end, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD), "MPI_Bcast");
    if (end > 0) deadline = end;
  }

  RunOptions options;
  options.chunk = {args.chunk_min, args.chunk_max};
  options.progress = !args.no_progress;
  options.progress_interval_s = args.progress_interval;
  options.root_works = args.root_works;
  options.rerun_failed = args.rerun_failed;
  options.retries = args.retries;
  options.stop_on_signals = true;
  options.grace_s = args.grace;
  options.deadline = deadline;
  if (args.estimate >= 0) options.estimate_s = args.estimate;
  if (command) {
    options.validate = [&](const ElementSetInfo& info, std::string_view first) {
      command->check_fields(element_fields(info, first));
    };
  }
  std::unique_ptr<PluginTasks> plugin_tasks;
  if (!args.plugin.empty()) plugin_tasks = start_plugin(args, options.root_works);
  Run run(id, MPI_COMM_WORLD, options);
  if (run.is_root() && options.progress && !run.claim_paths().empty()) {
    // Once, at the start: which way each window of the claimer went, and why when it fell back.
    std::vector<std::pair<std::string, std::string>> paths;
    std::string why;
    for (const WindowPath& p : run.claim_paths()) {
      paths.emplace_back(p.window, p.path);
      if (p.path == "two-sided" && why.empty()) why = " (" + p.detail + ")";
    }
    std::fprintf(stderr, "mpmux: claim paths: %s%s\n", claim_paths_text(paths).c_str(), why.c_str());
  }
  RunSummary summary;
  try {
    const CommandLimits limits{.timeout_s = args.timeout};
    if (!args.plugin.empty()) {
      if (plugin_tasks) {
        run_concurrently(run, *plugin_tasks);
        plugin_tasks.reset();  // the plugin's finalize in each thread
      } else {
        WorkItem none;  // a root that takes no elements coordinates inside next() until the end
        if (run.next(none)) throw Error("run: an element was handed to a rank without plugin threads");
      }
    } else if (args.procs > 1) {
      CommandTasks tasks(*command, limits, args.procs);
      run_concurrently(run, tasks);
    } else {
      process(run, *command, limits);
    }
    summary = run.finish();
  } catch (const std::exception& e) {
    // Past the start, the ranks are no longer in step: a failure here ends the whole job.
    std::fprintf(stderr, "mpmux: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, kExitFailed);
  }
  int code = kExitOk;
  if (run.is_root()) {
    const Session session = Session::open(id);
    // The session's results.h5 follows every run (rebuilt from the journals, then renamed).
    if (!summary.journal_failed) {  // with the disk full, leave the last results.h5 alone
      try {
        write_results_h5(session);
      } catch (const Error& e) {
        say_error(std::string("results.h5 not updated: ") + e.what());
      }
    }
    const Stat st = session_stat(session);
    if (summary.stopped && st.done + st.failed < st.total) {
      std::fprintf(stderr,
                   "mpmux: stopped (%s): %llu of %llu elements done, the rest stays pending; "
                   "run the same command again to resume\n",
                   summary.stop_reason.c_str(), static_cast<unsigned long long>(st.done),
                   static_cast<unsigned long long>(st.total));
      code = kExitStopped;
    } else if (st.failed > 0) {
      code = kExitFailed;
    }
  }
  check_mpi(MPI_Bcast(&code, 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Bcast");
  return code;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{
      "mpmux: hand the elements of a brute-force search to the workers of HPC jobs, each exactly once"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(MPMUX_VERSION_STRING));

  std::string root, from, format, tag, encoding = "utf-8";
  std::vector<std::string> grid;
  std::uint64_t range = 0;
  auto* new_cmd = app.add_subcommand("new", "Store an element set; prints the mux directory");
  new_cmd->add_option("ROOT", root, "Directory under which the mux directory is made")->required();
  new_cmd->add_option("--from", from, "CSV (with a header) or JSON Lines file, or FILE.h5:/DATASET");
  new_cmd->add_option("--format", format, "Format of --from when its name does not tell")
      ->check(CLI::IsMember({"csv", "jsonl"}));
  new_cmd->add_option("--encoding", encoding, "Encoding of --from: utf-8 or latin-1 (converted to UTF-8)")
      ->capture_default_str();
  new_cmd->add_option("--grid", grid, "NAME=v1,v2,... or NAME=start:stop[:step]; the cartesian product");
  auto* range_opt = new_cmd->add_option("--range", range, "Elements {\"i\": 0} ... {\"i\": N-1}");
  new_cmd->add_option("--tag", tag, "Suffix of the mux directory's name");

  std::string dir;
  auto* session_cmd = app.add_subcommand("session", "Create a read session; prints its mux id");
  session_cmd->add_option("MUX_DIR", dir, "A directory printed by `mpmux new`")->required();
  bool allow_foreign_owner = false;
  add_allow_foreign_owner(*session_cmd, allow_foreign_owner);

  RunArgs run_args;
  auto* run_cmd = app.add_subcommand("run", "Process the session's pending elements (under mpirun or srun)");
  run_cmd->add_option("MUX_ID", run_args.mux_id, "The session, as printed by `mpmux session`")->required();
  run_cmd->add_option("--exec", run_args.exec, "Command template: {field}, {#} (index), {{ and }}");
  run_cmd->add_option("--plugin", run_args.plugin,
                      "Task plugin LIB.so (C ABI of mpmux/plugin.h), run in-process by --threads threads");
  auto* plugin_arg_opt = run_cmd->add_option("--plugin-arg", run_args.plugin_arg,
                                             "Text given to the plugin's init in each thread");
  run_cmd->add_flag("--shell", run_args.shell, "Run the command with /bin/sh -c (values are quoted)");
  run_cmd->add_option("--chunk-min", run_args.chunk_min, "Smallest guided chunk")->capture_default_str();
  run_cmd->add_option("--chunk-max", run_args.chunk_max, "Largest guided chunk")->capture_default_str();
  run_cmd->add_flag("--no-progress", run_args.no_progress, "No progress output");
  run_cmd
      ->add_option("--progress-interval", run_args.progress_interval,
                   "Seconds between progress lines when stderr is not a terminal")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  run_cmd->add_flag("--root-works", run_args.root_works, "Rank 0 processes elements too");
  run_cmd->add_flag("--rerun-failed", run_args.rerun_failed, "Also hand out elements that failed for good");
  run_cmd->add_option("--retries", run_args.retries, "Retry a failed element up to N times, on any rank")
      ->capture_default_str()
      ->check(CLI::Range(0, 254));
  run_cmd
      ->add_option("--timeout", run_args.timeout, "Kill a task (its process group) after SECONDS; a failure")
      ->check(CLI::NonNegativeNumber);
  run_cmd
      ->add_option("--grace", run_args.grace,
                   "On SIGUSR1/SIGTERM or at the deadline: SECONDS for running tasks to finish")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  run_cmd->add_option("--deadline", run_args.deadline,
                      "End time: ISO (2026-11-22T02:10:00) or +DURATION (+2h); default: the Slurm job's end");
  auto* procs_opt =
      run_cmd
          ->add_option("--procs", run_args.procs,
                       "Commands run at once by each rank (start one rank per node and give its cores)")
          ->capture_default_str()
          ->check(CLI::Range(1, 4096));
  auto* threads_opt =
      run_cmd
          ->add_option("--threads", run_args.threads,
                       "Threads running --plugin tasks in each rank, each with its own plugin state")
          ->capture_default_str()
          ->check(CLI::Range(1, 4096));
  run_cmd
      ->add_option("--estimate", run_args.estimate, "Runtime estimate in SECONDS before any element finished")
      ->check(CLI::NonNegativeNumber);
  add_allow_foreign_owner(*run_cmd, run_args.allow_foreign_owner);

  const Command stat_cmd = add_stat_command(app);
  const Command results_cmd = add_results_command(app);

  std::string mux_id;

  auto* done_cmd = app.add_subcommand("done", "Exit 0 when every element is done, else 1");
  done_cmd->add_option("MUX_ID", mux_id)->required();

  auto* destroy_cmd = app.add_subcommand("destroy", "Remove a mux directory with all its sessions");
  destroy_cmd->add_option("MUX_DIR", dir, "A mux directory or a mux id")->required();
  add_allow_foreign_owner(*destroy_cmd, allow_foreign_owner);

  const auto subcommands = app.get_subcommands([](const CLI::App*) { return true; });
  if (argc > 1 && argv[1][0] != '-' &&
      std::none_of(subcommands.begin(), subcommands.end(),
                   [&](const CLI::App* c) { return c->get_name() == argv[1]; })) {
    std::string names;
    for (const CLI::App* c : subcommands) names += (names.empty() ? "" : ", ") + c->get_name();
    say_error(std::string("unknown command '") + argv[1] + "' (commands: " + names + ")");
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    say_error(std::string(e.what()) + " (see mpmux --help)");
    return kExitUsage;
  }

  try {
    if (*new_cmd) return cmd_new(root, from, format, encoding, grid, range, range_opt->count() > 0, tag);
    if (*session_cmd) {
      check_owner(mux_dir_of(dir), allow_foreign_owner);
      std::cout << Session::create(mux_dir_of(dir)).id().str() << '\n';
      return 0;
    }
    if (*run_cmd) {
      run_args.procs_given = procs_opt->count() > 0;
      run_args.threads_given = threads_opt->count() > 0;
      run_args.plugin_arg_given = plugin_arg_opt->count() > 0;
      return cmd_run(run_args);
    }
    if (*stat_cmd.app) return stat_cmd.run();
    if (*results_cmd.app) return results_cmd.run();
    if (*done_cmd) return cmd_done(mux_id);
    if (*destroy_cmd) {
      check_owner(mux_dir_of(dir), allow_foreign_owner);
      destroy_mux(mux_dir_of(dir));
      return 0;
    }
  } catch (const UsageError& e) {
    say_error(e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    say_error(e.what());
    return kExitFailed;
  }
  return kExitUsage;
} catch (const std::exception& e) {  // setting up the command line failed: a bug, said in one line
  std::fprintf(stderr, "mpmux: %s\n", e.what());
  return kExitFailed;
} catch (...) {
  std::fprintf(stderr, "mpmux: unknown exception\n");
  return kExitFailed;
}
