// The subcommands of the mpmux executable, each defined in a file of its own.
#pragma once
#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mpmux/journal.hpp"
#include "mpmux/session.hpp"

namespace mpmux::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;   // some elements failed for good; `done`: not all done
constexpr int kExitUsage = 2;    // bad usage or input
constexpr int kExitStopped = 75; // stopped (signal, deadline, journal write error): resumable

/// A registered subcommand and what runs it once parsed.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

/// The environment variable that names the session when a command is given no MUX_ID.
constexpr const char* kMuxIdEnv = "MPMUX_ID";

/// Adds the optional MUX_ID argument of a command that works on one session.
CLI::Option* add_mux_id(CLI::App& cmd, std::string& mux_id);
/// The session a command works on: MUX_ID when given, else $MPMUX_ID; a UsageError naming
/// `command` when neither is there, or naming MPMUX_ID when its value is malformed.
MuxId session_id(const std::string& mux_id, std::string_view command);

/// Prints "mpmux: <message>" on stderr, once per job (rank 0 only under a launcher).
void say_error(const std::string& message);

/// Refuses, with a UsageError naming the directory and its owner, to write into a mux or session
/// directory that belongs to another user, unless --allow-foreign-owner was given (`allowed`).
void check_owner(const std::filesystem::path& dir, bool allowed);
/// Adds --allow-foreign-owner to a command that writes into a mux directory.
CLI::Option* add_allow_foreign_owner(CLI::App& cmd, bool& allowed);

/// How an attempt ended, for people: "exit 3" or "signal 9 (SIGKILL)".
std::string exit_status(const Outcome& outcome);

/// "counter sm, elements (remote) two-sided": how a run's claimer serves each window.
inline std::string claim_paths_text(const std::vector<std::pair<std::string, std::string>>& paths) {
  std::string text;
  for (const auto& [window, path] : paths) text += (text.empty() ? "" : ", ") + window + " " + path;
  return text;
}

Command add_run_command(CLI::App& app);      // run.cpp
Command add_stat_command(CLI::App& app);     // stat.cpp
Command add_results_command(CLI::App& app);  // results.cpp
Command add_report_command(CLI::App& app);   // report.cpp
Command add_top_command(CLI::App& app);      // top.cpp
Command add_check_command(CLI::App& app);    // check.cpp

}  // namespace mpmux::cli
