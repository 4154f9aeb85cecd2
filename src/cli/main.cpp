// The mpmux command: new, session, run, stat, results, report, top, check, done, destroy.
// Exit codes: 0 all done; 1 some elements failed for good (or not done, for `done`);
// 2 bad usage or input; 75 stopped, resumable.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"
#include "mpmux/run.hpp"
#include "mpmux/session.hpp"
#include "store/element_input.hpp"

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

}  // namespace

void mpmux::cli::say_error(const std::string& message) {
  if (launcher_rank() == 0) std::fprintf(stderr, "mpmux: %s\n", message.c_str());
}

namespace {

int cmd_new(const std::string& root_arg, const std::string& from, const std::string& format,
            const std::string& encoding_name, const std::vector<std::string>& grid, std::uint64_t range,
            bool range_given, const std::string& tag) {
  const MuxRoot root = MuxRoot::parse(root_arg, "ROOT");
  const int sources = !from.empty() + !grid.empty() + range_given;
  if (sources != 1) throw UsageError("new: give exactly one of --from FILE, --grid SPEC..., --range N");
  if (from.empty() && text_encoding_from_string(encoding_name) != TextEncoding::utf8)
    throw UsageError("--encoding '" + encoding_name + "': only a --from file has an encoding");
  ParsedElements parsed;
  if (!from.empty()) {
    parsed = read_input_file(from, format, encoding_name);
  } else if (!grid.empty()) {
    parsed = make_grid(grid);
  } else {
    parsed = make_range(range);
  }
  std::cout << root.create(parsed, tag) << '\n';
  return 0;
}

int cmd_done(const std::string& mux_id) {
  // The counts alone: the participants' heartbeats do not change what is done.
  const SessionCounts counts = read_session_counts(Session::open(session_id(mux_id, "done")));
  std::printf("%llu of %llu elements done\n", static_cast<unsigned long long>(counts.done),
              static_cast<unsigned long long>(counts.total));
  return counts.done == counts.total ? 0 : kExitFailed;
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
  new_cmd
      ->add_option("ROOT", root, "Directory, or az://ACCOUNT/CONTAINER[/PREFIX], under which the mux is made")
      ->required();
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
  session_cmd->add_option("MUX_DIR", dir, "A mux printed by `mpmux new` (a directory or an az:// URL)")
      ->required();
  bool allow_foreign_owner = false;
  add_allow_foreign_owner(*session_cmd, allow_foreign_owner);

  const Command run_cmd = add_run_command(app);
  const Command stat_cmd = add_stat_command(app);
  const Command results_cmd = add_results_command(app);
  const Command report_cmd = add_report_command(app);
  const Command top_cmd = add_top_command(app);
  const Command check_cmd = add_check_command(app);

  std::string mux_id;

  auto* done_cmd = app.add_subcommand("done", "Exit 0 when every element is done, else 1");
  add_mux_id(*done_cmd, mux_id);

  auto* destroy_cmd = app.add_subcommand("destroy", "Remove a mux directory with all its sessions");
  destroy_cmd->add_option("MUX_DIR", dir, "A mux (directory or az:// URL) or a mux id")->required();
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
      const MuxLocation mux = MuxLocation::parse(dir, "MUX_DIR");
      if (mux.remote.empty()) check_owner(mux.dir, allow_foreign_owner);
      std::cout << mux.create_session().id().str() << '\n';
      return 0;
    }
    if (*run_cmd.app) return run_cmd.run();
    if (*stat_cmd.app) return stat_cmd.run();
    if (*results_cmd.app) return results_cmd.run();
    if (*report_cmd.app) return report_cmd.run();
    if (*top_cmd.app) return top_cmd.run();
    if (*check_cmd.app) return check_cmd.run();
    if (*done_cmd) return cmd_done(mux_id);
    if (*destroy_cmd) {
      const MuxLocation mux = MuxLocation::parse(dir, "MUX_DIR");
      if (mux.remote.empty()) check_owner(mux.dir, allow_foreign_owner);
      mux.destroy();
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
