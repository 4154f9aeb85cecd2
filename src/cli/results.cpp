// mpmux results: one row per element (its fields, status, worker, times, exit status, result)
// as CSV or JSON Lines on stdout or in a file, or as HDF5 (by default the session's results.h5).
#include "mpmux/results.hpp"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "mpmux/error.hpp"
#include "mpmux/session.hpp"
#include "store/fs.hpp"

namespace mpmux::cli {

namespace stdfs = std::filesystem;

void check_output(const stdfs::path& file, std::string_view command) {
  const std::string name = std::string(command) + ": -o '" + file.string() + "'";
  std::error_code ec;
  if (stdfs::is_directory(file, ec)) throw UsageError(name + ": is a directory");
  const stdfs::path dir = file.parent_path().empty() ? stdfs::path(".") : file.parent_path();
  if (!stdfs::is_directory(dir, ec)) throw UsageError(name + ": no directory '" + dir.string() + "'");
  if (::access(dir.c_str(), W_OK) != 0)
    throw UsageError(name + ": cannot write in '" + dir.string() + "': " + posix::error_text(errno));
}

namespace {

int results_command(const std::string& mux_id, const std::string& format_name, const std::string& output,
                    bool allow_foreign_owner) {
  const ResultsFormat format = results_format_from_string(format_name);
  const MuxId id = session_id(mux_id, "results");
  if (format == ResultsFormat::h5 && output.empty()) {  // into the session's results.h5
    check_owner(id.dir, allow_foreign_owner);
    check_owner(id.dir / "sessions" / id.session, allow_foreign_owner);
  }
  const Session session = Session::open(id);
  if (!output.empty()) check_output(output, "results");
  if (format == ResultsFormat::h5) {
    std::cout << stdfs::absolute(write_results_h5(session, output)).string() << '\n';
  } else if (!output.empty()) {
    write_results_file(session, format, output);
  } else if (format == ResultsFormat::csv) {
    write_results_csv(session, std::cout);
  } else {
    write_results_jsonl(session, std::cout);
  }
  return kExitOk;
}

}  // namespace

Command add_results_command(CLI::App& app) {
  struct Args {
    std::string mux_id;
    std::string format = "csv";
    std::string output;
    bool allow_foreign_owner = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "results",
      "One row per element (fields, status, worker, times, exit status, result): csv, jsonl or h5");
  add_mux_id(*cmd, args->mux_id);
  cmd->add_option("--format", args->format,
                  "csv or jsonl (to stdout unless -o), h5 (to the session's results.h5 "
                  "unless -o; prints the path)")
      ->check(CLI::IsMember({"csv", "jsonl", "h5"}))
      ->capture_default_str();
  cmd->add_option("-o,--output", args->output, "Write to this file instead (replaced atomically)");
  add_allow_foreign_owner(*cmd, args->allow_foreign_owner);
  return {cmd, [args] {
            return results_command(args->mux_id, args->format, args->output, args->allow_foreign_owner);
          }};
}

}  // namespace mpmux::cli
