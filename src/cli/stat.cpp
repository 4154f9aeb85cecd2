// mpmux stat: the counts of a session, as a table or one JSON object; the table is followed by
// the elements that failed for good, with their attempts, exit status and stderr tail.
#include <signal.h>
#include <string.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.hpp"
#include "mpmux/results.hpp"
#include "mpmux/run.hpp"
#include "mpmux/session.hpp"
#include "store/utf8.hpp"

namespace mpmux::cli {

std::string exit_status(const Outcome& o) {
  if (o.signal != 0) {
    std::string text = "signal " + std::to_string(o.signal);
    if (const char* abbrev = ::sigabbrev_np(o.signal)) text += std::string(" (SIG") + abbrev + ")";
    return text;
  }
  return "exit " + std::to_string(o.exit_code);
}

namespace {

constexpr std::size_t kListedFailures = 20;  // without --all
constexpr std::size_t kLineChars = 200;      // of the stderr line shown per element

// Text from a task, made safe for a terminal: invalid UTF-8 and control characters (escape
// sequences included) become '?'.
std::string printable(std::string_view s) {
  std::string out;
  while (!s.empty()) {
    const std::size_t bad = utf8::first_invalid(s);
    const std::string_view good = s.substr(0, bad);
    for (char c : good)
      out.push_back((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7F ? '?' : c);
    if (bad == std::string_view::npos) break;
    out.push_back('?');
    s.remove_prefix(bad + 1);
  }
  return out;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

std::string last_line(std::string_view text) {
  const auto lines = lines_of(text);
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (it->find_first_not_of(" \t") == std::string_view::npos) continue;
    std::string line = printable(*it);
    if (line.size() > kLineChars) {
      std::size_t cut = kLineChars;
      while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;  // whole characters
      line = line.substr(0, cut) + "...";
    }
    return line;
  }
  return "";
}

// Streams the rows of the failed elements, so a session of any size is listed in bounded memory.
void print_failures(const Session& session, bool all, bool verbose) {
  std::size_t failed = 0;
  for_each_result(
      session,
      [&](const ElementResult& r) {
        // The heading comes with the first row: the journals may have changed since the counts.
        if (failed++ == 0) std::printf("\nfailed elements:\n");
        if (!all && failed > kListedFailures) return;
        std::string line =
            "  element " + std::to_string(r.index) + "  attempts " + std::to_string(r.attempts);
        if (const auto& o = r.outcome) {
          line += "  " + exit_status(*o);
          if (o->flags & Outcome::kTimedOut) line += "  timed out";
          const std::string last = last_line(o->stderr_tail);
          line += last.empty() ? "  (no stderr)" : "  stderr: " + last;
          std::printf("%s\n", line.c_str());
          if (verbose)
            for (std::string_view l : lines_of(o->stderr_tail))
              std::printf("    | %s\n", printable(l).c_str());
        } else {
          std::printf("%s\n", line.c_str());
        }
      },
      ElementStatus::failed);
  if (!all && failed > kListedFailures)
    std::printf("  ... and %zu more (mpmux stat --all lists them)\n", failed - kListedFailures);
}

int stat_command(const std::string& mux_id, bool json, bool all, bool verbose) {
  const Session session = Session::open(MuxId::parse(mux_id));
  const Stat st = session_stat(session);
  if (json) {
    nlohmann::ordered_json j{{"total", st.total},
                             {"done", st.done},
                             {"failed", st.failed},
                             {"running", st.running},
                             {"pending", st.pending}};
    // Only while a run is live: how its claimer serves each window.
    if (!st.claim_paths.empty()) {
      nlohmann::ordered_json paths = nlohmann::ordered_json::object();
      for (const auto& [window, path] : st.claim_paths) paths[window] = path;
      j["claim_paths"] = std::move(paths);
    }
    std::cout << j.dump() << '\n';
    return 0;
  }
  std::printf("mux id   %s\n", session.id().str().c_str());
  std::printf("total    %llu\n", static_cast<unsigned long long>(st.total));
  std::printf("done     %llu\n", static_cast<unsigned long long>(st.done));
  std::printf("failed   %llu\n", static_cast<unsigned long long>(st.failed));
  std::printf("running  %llu\n", static_cast<unsigned long long>(st.running));
  std::printf("pending  %llu\n", static_cast<unsigned long long>(st.pending));
  if (!st.claim_paths.empty()) std::printf("claims   %s\n", claim_paths_text(st.claim_paths).c_str());
  // Outcomes are loaded only when something failed: the counts alone stay cheap.
  if (st.failed > 0) print_failures(session, all, verbose);
  return 0;
}

}  // namespace

Command add_stat_command(CLI::App& app) {
  struct Args {
    std::string mux_id;
    bool json = false;
    bool all = false;
    bool verbose = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "stat", "Counts of a session (total, done, failed, running, pending) and the elements that failed");
  cmd->add_option("MUX_ID", args->mux_id, "The session")->required();
  cmd->add_flag("--json", args->json, "Only the counts, as one JSON object");
  cmd->add_flag("--all", args->all, "List every failed element (default: the first 20)");
  cmd->add_flag("-v,--verbose", args->verbose, "Show the whole stderr tail of each failed element");
  return {cmd, [args] { return stat_command(args->mux_id, args->json, args->all, args->verbose); }};
}

}  // namespace mpmux::cli
